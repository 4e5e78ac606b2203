package pivcard

// Status words.
const (
	swOK                  = 0x9000
	swBytesRemaining      = 0x6100 // low byte: how many (0 = 256 or more)
	swVerifyFail          = 0x63c0 // low nibble: retries left
	swWrongLength         = 0x6700
	swSecurityStatus      = 0x6982
	swAuthBlocked         = 0x6983
	swConditionsNotMet    = 0x6985
	swIncorrectData       = 0x6a80
	swFuncNotSupported    = 0x6a81
	swFileNotFound        = 0x6a82
	swIncorrectP1P2       = 0x6a86
	swReferenceNotFound   = 0x6a88
	swInsNotSupported     = 0x6d00
	swClassNotSupported   = 0x6e00
	maxResponseChunk      = 255
	insGetResponse        = 0xc0
	claChain              = 0x10
	appNone, appPIV       = 0, 1
	appOTP, appManagement = 2, 3
)

// command is a parsed command APDU.
type command struct {
	cla, ins, p1, p2 byte
	data             []byte
}

// parseAPDU parses short (and, leniently, extended) command APDUs.
func parseAPDU(b []byte) (command, bool) {
	if len(b) < 4 {
		return command{}, false
	}
	cmd := command{cla: b[0], ins: b[1], p1: b[2], p2: b[3]}
	switch {
	case len(b) <= 5: // no data, maybe Le
	case b[4] == 0 && len(b) >= 7: // extended length
		n := int(b[5])<<8 | int(b[6])
		if len(b) < 7+n {
			return command{}, false
		}
		cmd.data = b[7 : 7+n]
	default:
		n := int(b[4])
		if len(b) < 5+n {
			return command{}, false
		}
		cmd.data = b[5 : 5+n]
	}
	return cmd, true
}

func withSW(data []byte, sw uint16) []byte {
	return append(append([]byte(nil), data...), byte(sw>>8), byte(sw))
}

// handleAPDU processes one command APDU and returns the response APDU. It
// returns errRemoved if the card was removed while the command ran.
func (c *Card) handleAPDU(raw []byte, removed <-chan struct{}) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.APDUs++
	cmd, ok := parseAPDU(raw)
	if !ok {
		return withSW(nil, swWrongLength), nil
	}
	if cmd.cla&^claChain != 0 {
		return withSW(nil, swClassNotSupported), nil
	}
	s := &c.sess

	if cmd.ins == insGetResponse && cmd.cla == 0 {
		if s.pending == nil {
			return withSW(nil, swConditionsNotMet), nil
		}
		return c.respond(s.pending, swOK), nil
	}
	s.pending = nil

	// Command chaining (ISO 7816-4 5.1.1): CLA 0x10 on all but the last part.
	if cmd.cla&claChain != 0 {
		if !s.chaining || s.chainINS != cmd.ins {
			s.chain = nil
		}
		s.chaining, s.chainINS = true, cmd.ins
		s.chain = append(s.chain, cmd.data...)
		return withSW(nil, swOK), nil
	}
	if s.chaining {
		if s.chainINS == cmd.ins {
			cmd.data = append(s.chain, cmd.data...)
		}
		s.chaining, s.chain = false, nil
	}

	justVerified := s.pinJustVerified
	s.pinJustVerified = false
	data, sw, err := c.dispatch(cmd, justVerified, removed)
	if err != nil {
		return nil, err
	}
	return c.respond(data, sw), nil
}

// respond returns the first chunk of data and queues the rest for GET
// RESPONSE (status 61xx), as a card with short APDUs does.
func (c *Card) respond(data []byte, sw uint16) []byte {
	s := &c.sess
	if sw != swOK || len(data) <= maxResponseChunk {
		s.pending = nil
		return withSW(data, sw)
	}
	chunk, rest := data[:maxResponseChunk], data[maxResponseChunk:]
	s.pending = rest
	n := len(rest)
	if n > 255 {
		n = 0
	}
	return withSW(chunk, swBytesRemaining|uint16(n))
}
