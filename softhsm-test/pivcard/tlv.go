package pivcard

import "errors"

var errBadTLV = errors.New("malformed BER-TLV data")

// tlv is one BER-TLV element: a tag of one to three bytes (kept as an
// integer, e.g. 0x7f49) and its value.
type tlv struct {
	tag   uint32
	value []byte
}

// parseTLVs splits b into a sequence of BER-TLV elements. Lengths may use the
// short form or the 0x81/0x82 long forms.
func parseTLVs(b []byte) ([]tlv, error) {
	var out []tlv
	for len(b) > 0 {
		tag := uint32(b[0])
		b = b[1:]
		if tag&0x1f == 0x1f {
			for {
				if len(b) == 0 || tag > 0xffff {
					return nil, errBadTLV
				}
				next := b[0]
				b = b[1:]
				tag = tag<<8 | uint32(next)
				if next&0x80 == 0 {
					break
				}
			}
		}
		if len(b) == 0 {
			return nil, errBadTLV
		}
		n := int(b[0])
		b = b[1:]
		switch {
		case n < 0x80:
		case n == 0x81:
			if len(b) < 1 {
				return nil, errBadTLV
			}
			n, b = int(b[0]), b[1:]
		case n == 0x82:
			if len(b) < 2 {
				return nil, errBadTLV
			}
			n, b = int(b[0])<<8|int(b[1]), b[2:]
		default:
			return nil, errBadTLV
		}
		if len(b) < n {
			return nil, errBadTLV
		}
		out = append(out, tlv{tag: tag, value: b[:n]})
		b = b[n:]
	}
	return out, nil
}

// findTLV returns the value of the first element with the given tag.
func findTLV(ts []tlv, tag uint32) ([]byte, bool) {
	for _, t := range ts {
		if t.tag == tag {
			return t.value, true
		}
	}
	return nil, false
}

// encodeTLV encodes tag and value with a DER-minimal length, as piv-go's
// encoding/asn1 based parser requires.
func encodeTLV(tag uint32, value []byte) []byte {
	var out []byte
	switch {
	case tag > 0xffff:
		out = append(out, byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xff:
		out = append(out, byte(tag>>8), byte(tag))
	default:
		out = append(out, byte(tag))
	}
	n := len(value)
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	default:
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, value...)
}

// concat joins byte slices.
func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
