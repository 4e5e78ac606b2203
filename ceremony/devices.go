package ceremony

import (
	"fmt"
	"strings"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// deviceIdentity names the physical device a key lives in, from what the
// device itself reported (not from how the URI names it): a PKCS#11
// token's manufacturer, model and serial, or a YubiKey's serial. Empty when
// the device did not say.
func deviceIdentity(k *Key) string {
	ev := k.Evidence
	if ev == nil {
		return ""
	}
	switch ev.Kind {
	case hsm.EvidencePKCS11:
		if strings.TrimSpace(ev.TokenSerial) == "" {
			return ""
		}
		return fmt.Sprintf("%s %s serial %s", strings.TrimSpace(ev.TokenManufacturer), strings.TrimSpace(ev.TokenModel), strings.TrimSpace(ev.TokenSerial))
	case hsm.EvidencePIV:
		if ev.Serial == 0 {
			return ""
		}
		return fmt.Sprintf("YubiKey serial %d", ev.Serial)
	}
	return ""
}

// SameDeviceError reports two root keys in one device: a threshold over
// them would be a threshold in name only.
type SameDeviceError struct {
	Device string
	A, B   string
}

func (e *SameDeviceError) Error() string {
	return fmt.Sprintf("root keys %s and %s are in the same device (%s): root keys must be on different devices", objectOf(e.A), objectOf(e.B), e.Device)
}

// Hint says what to do.
func (e *SameDeviceError) Hint() string {
	return "give each root officer a key on their own token or YubiKey; the device serial is what counts, not the URI"
}

// distinctDevices refuses keys that share a device.
func distinctDevices(keys []*Key) error {
	seen := map[string]*Key{}
	for _, k := range keys {
		d := deviceIdentity(k)
		if d == "" {
			continue
		}
		if other, dup := seen[d]; dup {
			return &SameDeviceError{Device: d, A: other.URI, B: k.URI}
		}
		seen[d] = k
	}
	return nil
}
