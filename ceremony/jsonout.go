package ceremony

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// JSON for machines (docs/json.md): every output is an object whose first
// member is "schema_version"; times are RFC 3339 in UTC with whole
// seconds; durations are numbers of seconds in members named *_seconds.

// SchemaVersion is the version of every JSON output's shape. It grows
// when a member is renamed, removed or changes its meaning; new members
// may appear without it.
const SchemaVersion = 1

// Seconds is a duration that JSON writes as a number of seconds: an
// integer for whole seconds, else with millisecond precision. Its String
// is Duration's ("30d", "1d12h").
type Seconds time.Duration

// MarshalJSON writes s as a number of seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	d := time.Duration(s)
	if d%time.Second == 0 {
		return strconv.AppendInt(nil, int64(d/time.Second), 10), nil
	}
	return strconv.AppendFloat(nil, math.Round(d.Seconds()*1000)/1000, 'f', -1, 64), nil
}

// UnmarshalJSON reads a number of seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = Seconds(math.Round(f * float64(time.Second)))
	return nil
}

// String formats s as Duration does.
func (s Seconds) String() string { return Duration(s).String() }

// D returns s as a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }

// Remaining says how long is left for people: "4d23h", or "expired 2d
// ago" when s is negative.
func (s Seconds) Remaining() string { return leftText(time.Duration(s)) }
