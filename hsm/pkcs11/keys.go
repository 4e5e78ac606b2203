package pkcs11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"

	"github.com/miekg/pkcs11"
	"github.com/rootkeeper/rootkeeper/hsm"
)

// DER encodings of the CKA_EC_PARAMS rootkeeper writes and reads.
var (
	paramsP256 = mustOID(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})
	paramsP384 = mustOID(asn1.ObjectIdentifier{1, 3, 132, 0, 34})
	// Ed25519 has two encodings in PKCS#11 v3.0: the printable string
	// "edwards25519" and the OID id-Ed25519 (1.3.101.112, RFC 8410).
	// SoftHSM 2.6 accepts both in a template but writes the printable
	// string on the private key whatever it was given, as OpenSC 0.23's
	// pkcs11-tool does on both keys, so rootkeeper generates with the
	// printable string and falls back to the OID for tokens that refuse it.
	paramsEd25519Name = mustPrintable("edwards25519")
	paramsEd25519     = mustOID(asn1.ObjectIdentifier{1, 3, 101, 112})
)

func mustOID(oid asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return b
}

func mustPrintable(s string) []byte {
	b, err := asn1.MarshalWithParams(s, "printable")
	if err != nil {
		panic(err)
	}
	return b
}

// ulong decodes a CK_ULONG attribute value (native byte order).
func ulong(b []byte) (uint, bool) {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b)), true
	case 4:
		return uint(binary.NativeEndian.Uint32(b)), true
	}
	return 0, false
}

// isTrue decodes a CK_BBOOL attribute value.
func isTrue(b []byte) bool { return len(b) == 1 && b[0] != 0 }

// keyTemplates returns the mechanism and the public and private key
// templates that generate a key of algorithm alg.
func keyTemplates(alg hsm.Algorithm, label string, id []byte) (*pkcs11.Mechanism, []*pkcs11.Attribute, []*pkcs11.Attribute, error) {
	var mech uint
	var keyType uint
	var params []*pkcs11.Attribute
	switch alg {
	case hsm.ECDSAP256, hsm.ECDSAP384:
		mech, keyType = pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKK_EC
		p := paramsP256
		if alg == hsm.ECDSAP384 {
			p = paramsP384
		}
		params = append(params, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p))
	case hsm.Ed25519:
		mech, keyType = ckmECEdwardsKeyPairGen, ckkECEdwards
		params = append(params, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, paramsEd25519Name))
	case hsm.RSA3072, hsm.RSA4096:
		mech, keyType = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKK_RSA
		bits := 3072
		if alg == hsm.RSA4096 {
			bits = 4096
		}
		params = append(params,
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
	default:
		return nil, nil, nil, &hsm.Error{Kind: hsm.ErrUnsupported, Detail: fmt.Sprintf("algorithm %q is not supported", alg),
			HintText: "use one of ecdsa-p256, ecdsa-p384, ed25519, rsa-3072, rsa-4096"}
	}
	pub := append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}, params...)
	priv := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN_RECOVER, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	return pkcs11.NewMechanism(mech, nil), pub, priv, nil
}

// publicTypes are the attributes a public key is read from.
var publicTypes = []uint{
	pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_ID,
	pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT,
}

// privateTypes are the attributes read from a private key: its identity,
// the public parts some tokens keep on it, and the evidence.
var privateTypes = []uint{
	pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_SIGN, pkcs11.CKA_ALWAYS_AUTHENTICATE,
	pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT,
	pkcs11.CKA_LOCAL, pkcs11.CKA_NEVER_EXTRACTABLE, pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_SENSITIVE,
	pkcs11.CKA_DECRYPT, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE, pkcs11.CKA_SIGN_RECOVER,
}

// curveOf maps CKA_EC_PARAMS to a curve; ed is true for Ed25519.
func curveOf(params []byte) (curve elliptic.Curve, ed bool, err error) {
	switch {
	case bytes.Equal(params, paramsP256):
		return elliptic.P256(), false, nil
	case bytes.Equal(params, paramsP384):
		return elliptic.P384(), false, nil
	case bytes.Equal(params, paramsEd25519), bytes.Equal(params, paramsEd25519Name):
		return nil, true, nil
	}
	return nil, false, fmt.Errorf("unsupported curve (CKA_EC_PARAMS %x)", params)
}

// canonParams maps the two encodings of Ed25519's CKA_EC_PARAMS to one.
func canonParams(p []byte) []byte {
	if bytes.Equal(p, paramsEd25519) {
		return paramsEd25519Name
	}
	return p
}

// ecPoint undoes the DER OCTET STRING that PKCS#11 wraps CKA_EC_POINT in
// (some tokens leave it off) when the result has the expected length.
func ecPoint(b []byte, want int) []byte {
	var inner []byte
	if rest, err := asn1.Unmarshal(b, &inner); err == nil && len(rest) == 0 && len(inner) == want {
		return inner
	}
	return b
}

// unwrapPoint removes a DER OCTET STRING around b, if there is one.
func unwrapPoint(b []byte) []byte {
	var inner []byte
	if rest, err := asn1.Unmarshal(b, &inner); err == nil && len(rest) == 0 {
		return inner
	}
	return b
}

// parsePublic builds the Go public key from a public key object's
// attributes.
func parsePublic(a map[uint][]byte) (crypto.PublicKey, error) {
	kt, ok := ulong(a[pkcs11.CKA_KEY_TYPE])
	if !ok {
		return nil, fmt.Errorf("public key has no CKA_KEY_TYPE")
	}
	switch kt {
	case pkcs11.CKK_EC:
		curve, _, err := curveOf(a[pkcs11.CKA_EC_PARAMS])
		if err != nil || curve == nil {
			return nil, fmt.Errorf("EC key: unsupported curve (CKA_EC_PARAMS %x)", a[pkcs11.CKA_EC_PARAMS])
		}
		size := (curve.Params().BitSize + 7) / 8
		pt := ecPoint(a[pkcs11.CKA_EC_POINT], 1+2*size)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
		if err != nil {
			return nil, fmt.Errorf("EC key: bad CKA_EC_POINT: %v", err)
		}
		return pub, nil
	case ckkECEdwards:
		if _, ed, err := curveOf(a[pkcs11.CKA_EC_PARAMS]); err != nil || !ed {
			return nil, fmt.Errorf("EdDSA key: unsupported curve (CKA_EC_PARAMS %x)", a[pkcs11.CKA_EC_PARAMS])
		}
		pt := ecPoint(a[pkcs11.CKA_EC_POINT], ed25519.PublicKeySize)
		if len(pt) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("EdDSA key: CKA_EC_POINT has %d bytes", len(pt))
		}
		return ed25519.PublicKey(bytes.Clone(pt)), nil
	case pkcs11.CKK_RSA:
		n, e := a[pkcs11.CKA_MODULUS], a[pkcs11.CKA_PUBLIC_EXPONENT]
		if len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("RSA key: missing or bad CKA_MODULUS or CKA_PUBLIC_EXPONENT")
		}
		exp := new(big.Int).SetBytes(e)
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}, nil
	}
	return nil, fmt.Errorf("key type 0x%x is not supported", kt)
}

// sameKey compares the public parts a private key object carries with its
// public key. It returns a description of the first difference, or "".
func sameKey(pub, priv map[uint][]byte) string {
	if !bytes.Equal(pub[pkcs11.CKA_KEY_TYPE], priv[pkcs11.CKA_KEY_TYPE]) {
		return "the key types differ"
	}
	for _, c := range []struct {
		typ  uint
		name string
	}{
		{pkcs11.CKA_MODULUS, "CKA_MODULUS"},
		{pkcs11.CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT"},
	} {
		if v, ok := priv[c.typ]; ok && len(v) > 0 && !bytes.Equal(v, pub[c.typ]) {
			return "their " + c.name + " differ"
		}
	}
	if v, ok := priv[pkcs11.CKA_EC_PARAMS]; ok && len(v) > 0 && !bytes.Equal(canonParams(v), canonParams(pub[pkcs11.CKA_EC_PARAMS])) {
		return "their curves (CKA_EC_PARAMS) differ"
	}
	if v, ok := priv[pkcs11.CKA_EC_POINT]; ok && len(v) > 0 {
		if !bytes.Equal(unwrapPoint(v), unwrapPoint(pub[pkcs11.CKA_EC_POINT])) {
			return "their CKA_EC_POINT differ"
		}
	}
	return ""
}

// evidence builds the hsm.Evidence from a private key's attributes.
func (t *token) evidence(priv map[uint][]byte) *hsm.Evidence {
	return &hsm.Evidence{
		Kind:              hsm.EvidencePKCS11,
		Local:             isTrue(priv[pkcs11.CKA_LOCAL]),
		NeverExtractable:  isTrue(priv[pkcs11.CKA_NEVER_EXTRACTABLE]),
		AlwaysSensitive:   isTrue(priv[pkcs11.CKA_ALWAYS_SENSITIVE]),
		Extractable:       isTrue(priv[pkcs11.CKA_EXTRACTABLE]),
		Sensitive:         isTrue(priv[pkcs11.CKA_SENSITIVE]),
		Decrypt:           isTrue(priv[pkcs11.CKA_DECRYPT]),
		Unwrap:            isTrue(priv[pkcs11.CKA_UNWRAP]),
		Derive:            isTrue(priv[pkcs11.CKA_DERIVE]),
		SignRecover:       isTrue(priv[pkcs11.CKA_SIGN_RECOVER]),
		TokenLabel:        clean(t.info.Label),
		TokenManufacturer: clean(t.info.ManufacturerID),
		TokenModel:        clean(t.info.Model),
		TokenSerial:       clean(t.info.SerialNumber),
	}
}

// keyURI is the canonical URI of a key: token label, object label and id
// (every id byte percent-encoded, as RFC 7512 writes ids).
func keyURI(tokenLabel, label string, id []byte) string {
	s := "pkcs11:token=" + escape(tokenLabel)
	if label != "" {
		s += ";object=" + escape(label)
	}
	if len(id) > 0 {
		var b strings.Builder
		for _, c := range id {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		s += ";id=" + b.String()
	}
	return s
}

// escape percent-encodes what RFC 7512 does not allow in a path value.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:[]@!$'()*+,", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// keyPair is a private key and its public key found on a token.
type keyPair struct {
	pub, priv   pkcs11.ObjectHandle
	pubAttrs    map[uint][]byte
	privAttrs   map[uint][]byte
	info        hsm.KeyInfo
	keyType     uint
	canSign     bool
	alwaysAuthn bool
}

// keyInfo fills a KeyInfo from a key's attributes.
func (t *token) keyInfo(pubAttrs, privAttrs map[uint][]byte) (hsm.KeyInfo, error) {
	a := pubAttrs
	if a == nil {
		a = privAttrs
	}
	label, id := string(a[pkcs11.CKA_LABEL]), a[pkcs11.CKA_ID]
	info := hsm.KeyInfo{
		URI:      keyURI(clean(t.info.Label), label, id),
		Label:    label,
		ID:       hex.EncodeToString(id),
		Evidence: t.evidence(privAttrs),
	}
	if pubAttrs == nil {
		return info, nil
	}
	pub, err := parsePublic(pubAttrs)
	if err != nil {
		return info, err
	}
	info.Public = pub
	if alg, err := hsm.AlgorithmOf(pub); err == nil {
		info.Algorithm = alg
	}
	return info, nil
}

// selector returns the template part that the URI's object and id select.
func selector(uri *hsm.URI) ([]*pkcs11.Attribute, error) {
	var tmpl []*pkcs11.Attribute
	if label, ok := uri.Path("object"); ok {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if id, ok := uri.Path("id"); ok {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(id)))
	}
	if len(tmpl) == 0 {
		return nil, &hsm.Error{Kind: hsm.ErrKeyNotFound, URI: uri.Object(), Detail: "the URI names no key",
			HintText: "add object=LABEL (or id=%..) to the URI; pkcs11-tool --login --list-objects shows the token's keys"}
	}
	return tmpl, nil
}

// describe lists objects for a hint: "label (id 01), …".
func (t *token) describe(objs []pkcs11.ObjectHandle) string {
	var out []string
	for _, o := range objs {
		a, _ := attrs(t.mod.drv, t.session, o, pkcs11.CKA_LABEL, pkcs11.CKA_ID)
		out = append(out, fmt.Sprintf("object=%s;id=%s", escape(string(a[pkcs11.CKA_LABEL])), idText(a[pkcs11.CKA_ID])))
	}
	return strings.Join(out, ", ")
}

func idText(id []byte) string {
	var b strings.Builder
	for _, c := range id {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func classTemplate(class uint, sel []*pkcs11.Attribute) []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}, sel...)
}

// resolveKey finds the key the URI names: its public key by label and id,
// then the private key by the public key's CKA_ID, and checks that the
// two belong together. t.mu is held and the token is logged in to.
func (t *token) resolveKey(uri *hsm.URI) (*keyPair, error) {
	sel, err := selector(uri)
	if err != nil {
		return nil, err
	}
	name := uri.Object()
	pubs, err := t.find(classTemplate(pkcs11.CKO_PUBLIC_KEY, sel))
	if err != nil {
		return nil, err
	}
	switch len(pubs) {
	case 0:
		privs, _ := t.find(classTemplate(pkcs11.CKO_PRIVATE_KEY, sel))
		if len(privs) > 0 {
			return nil, &hsm.Error{Kind: hsm.ErrKeyNotFound, URI: name,
				Detail:   "a private key matches but there is no public key object with its label and id on " + t.device(),
				HintText: "rootkeeper needs the public key object to check the key; import the public key with the same CKA_ID and CKA_LABEL (pkcs11-tool --write-object PUB.der --type pubkey --id ID --label LABEL)"}
		}
		return nil, &hsm.Error{Kind: hsm.ErrKeyNotFound, URI: name, Detail: "no key matches on " + t.device(),
			HintText: "check object= and id= against the token's keys (pkcs11-tool --login --list-objects)"}
	case 1:
	default:
		return nil, &hsm.Error{Kind: hsm.ErrAmbiguousKey, URI: name,
			Detail:   fmt.Sprintf("%d public keys match on %s", len(pubs), t.device()),
			HintText: "add id= (or object=) to the URI to name one of: " + t.describe(pubs)}
	}
	kp := &keyPair{pub: pubs[0]}
	if kp.pubAttrs, err = attrs(t.mod.drv, t.session, kp.pub, publicTypes...); err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: name, Detail: "cannot read the public key's attributes", Err: err}
	}
	id := kp.pubAttrs[pkcs11.CKA_ID]
	if len(id) == 0 {
		return nil, &hsm.Error{Kind: hsm.ErrKeyNotFound, URI: name, Detail: "the public key has no CKA_ID, so its private key cannot be found",
			HintText: "give the key pair a common CKA_ID (pkcs11-tool --set-id), then name it with id="}
	}
	privs, err := t.find([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	})
	if err != nil {
		return nil, err
	}
	switch len(privs) {
	case 0:
		return nil, &hsm.Error{Kind: hsm.ErrKeyNotFound, URI: name,
			Detail:   fmt.Sprintf("the public key (id %s) has no private key with the same CKA_ID on %s", idText(id), t.device()),
			HintText: "the token holds only the public half of this key: sign with the token that holds the private key, or check that you are logged in as its owner"}
	case 1:
	default:
		return nil, &hsm.Error{Kind: hsm.ErrAmbiguousKey, URI: name,
			Detail:   fmt.Sprintf("%d private keys have CKA_ID %s on %s", len(privs), idText(id), t.device()),
			HintText: "give each key pair its own CKA_ID (pkcs11-tool --set-id); these are: " + t.describe(privs)}
	}
	kp.priv = privs[0]
	if kp.privAttrs, err = attrs(t.mod.drv, t.session, kp.priv, privateTypes...); err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: name, Detail: "cannot read the private key's attributes", Err: err}
	}
	if diff := sameKey(kp.pubAttrs, kp.privAttrs); diff != "" {
		return nil, &hsm.Error{Kind: hsm.ErrKeyMismatch, URI: name,
			Detail:   "the public key and the private key with CKA_ID " + idText(id) + " do not belong together: " + diff,
			HintText: "the token's objects were changed: do not sign with this key; re-import the right public key or name another key"}
	}
	kp.keyType, _ = ulong(kp.pubAttrs[pkcs11.CKA_KEY_TYPE])
	_, hasSign := kp.privAttrs[pkcs11.CKA_SIGN]
	kp.canSign = !hasSign || isTrue(kp.privAttrs[pkcs11.CKA_SIGN])
	kp.alwaysAuthn = isTrue(kp.privAttrs[pkcs11.CKA_ALWAYS_AUTHENTICATE])
	if kp.info, err = t.keyInfo(kp.pubAttrs, kp.privAttrs); err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: name, Detail: "cannot use the public key", Err: err,
			HintText: "rootkeeper signs with ECDSA P-256/P-384, Ed25519 and RSA-3072/4096 keys"}
	}
	return kp, nil
}
