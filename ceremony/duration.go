package ceremony

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration that also accepts days and weeks ("365d",
// "2w", "36h", "1d12h") the way officers write expiry periods.
type Duration time.Duration

// ParseDuration parses s as a Duration. It refuses anything longer than
// MaxDuration (and any number that would overflow on the way there).
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("invalid duration %q (write e.g. 365d, 2w, 36h, 90m)", s)
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		unit, ok := durationUnits[rest[i:j]]
		if !ok {
			return 0, fmt.Errorf("invalid duration %q: unknown unit %q (use w, d, h, m or s)", s, rest[i:j])
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		// Each step is checked before it is added: n*unit and the sum
		// stay below MaxDuration, far from int64's limit.
		if err != nil || n > int64(MaxDuration/unit) || total+time.Duration(n)*unit > MaxDuration {
			return 0, fmt.Errorf("invalid duration %q: more than %s", s, maxDurationText)
		}
		total += time.Duration(n) * unit
		rest = rest[j:]
	}
	return Duration(total), nil
}

var durationUnits = map[string]time.Duration{
	"w": 7 * 24 * time.Hour,
	"d": 24 * time.Hour,
	"h": time.Hour,
	"m": time.Minute,
	"s": time.Second,
}

// MaxDuration is the longest duration rootkeeper reads anywhere (a plan,
// rootkeeper.yaml, --within, --at): 100 years.
const MaxDuration = 100 * 365 * 24 * time.Hour

const maxDurationText = "100 years (36500d)"

// Human formats a span of time for people, rounded to two units at most
// in the style of Duration.String: "4d23h", "5h12m", "40m". A span of a
// day or more is rounded to the hour, a shorter one to the minute. The
// sign is dropped: callers say "ago" themselves.
func Human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	if d >= 24*time.Hour {
		d = d.Round(time.Hour)
	} else {
		d = d.Round(time.Minute)
	}
	if d == 0 {
		return "0m"
	}
	return Duration(d).String()
}

// String formats d exactly in days, hours, minutes and seconds, leaving
// out the units that are zero: "365d", "1d12h", "90d30m", "45s". Every
// duration rootkeeper prints uses this one style (Human rounds first);
// ParseDuration reads it back. Fractions of a second are dropped.
func (d Duration) String() string {
	t := time.Duration(d)
	if t == 0 {
		return "0s"
	}
	var b strings.Builder
	if t < 0 {
		b.WriteByte('-')
		t = -t
	}
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if n := t / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			t -= n * u.d
		}
	}
	if b.Len() == 0 || b.String() == "-" {
		return "0s"
	}
	return b.String()
}

// UnmarshalYAML reads a Duration from a YAML scalar.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration such as 365d", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML writes a Duration as text.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
