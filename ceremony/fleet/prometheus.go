package fleet

import (
	"bytes"
	"io"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

// Prometheus metrics for node_exporter's textfile collector, written in
// the text exposition format by prometheus/common's expfmt. A set of
// hashed bins is one role, role="PREFIX-*", whatever the number of bins:
// the earliest expiry, the lowest version and signature count and the
// worst state of its bins, with how many bins there are, how many are due
// or invalid, and which bin is the worst. The size of the file grows with
// the number of repositories and roles, never with the number of bins.

// promMetric is one metric family of the file, in the order written.
type promMetric struct{ name, help string }

var promMetrics = []promMetric{
	{"rootkeeper_status_time_seconds", "When rootkeeper last read the repositories (Unix time; --at if given)."},
	{"rootkeeper_repositories", "Repositories by state: healthy, due (a role inside its re-signing window), invalid (clients refuse it), error (could not be read)."},
	{"rootkeeper_repository_up", "1 if the repository's status could be read, 0 if not."},
	{"rootkeeper_repository_health", "Repository health: 0 healthy, 1 due for re-signing, 2 invalid (clients refuse it)."},
	{"rootkeeper_role_health", "Role health: 0 healthy, 1 due for re-signing, 2 invalid; for hashed bins (role PREFIX-*) the worst bin's."},
	{"rootkeeper_role_expiry_timestamp_seconds", "When the role's current metadata expires (Unix time); for hashed bins the earliest."},
	{"rootkeeper_role_resign_window_seconds", "The role's re-signing window: it is due when less than this is left."},
	{"rootkeeper_role_version", "The role's current metadata version; for hashed bins the lowest."},
	{"rootkeeper_role_signatures_valid", "Valid signatures by distinct keys of the role; for hashed bins the fewest."},
	{"rootkeeper_role_signatures_needed", "The role's signature threshold."},
	{"rootkeeper_role_bins", "How many hashed bins the set of bins (role PREFIX-*) has."},
	{"rootkeeper_role_bins_due", "How many hashed bins of the set are inside their re-signing window."},
	{"rootkeeper_role_bins_invalid", "How many hashed bins of the set clients refuse."},
	{"rootkeeper_role_bins_worst_info", "The set's worst bin (bin label): the first to expire of those in the worst state."},
	{"rootkeeper_status_pass_seconds", "status --every: how long the last pass took to read every repository."},
	{"rootkeeper_status_pass_repositories", "status --every: repositories of the last pass, by how they were read: verified (in full) or unchanged (every file as the last verification read it, drawn from memory)."},
}

// Pass describes one pass of the long-running status (status --every),
// for the metrics file.
type Pass struct {
	Took      time.Duration // reading every repository
	Verified  int64         // repositories verified in full
	Unchanged int64         // repositories drawn from memory
}

// promSeries collects the series of each metric.
type promSeries map[string][]*dto.Metric

func (s promSeries) add(name string, v float64, labels ...string) {
	m := &dto.Metric{Gauge: &dto.Gauge{Value: proto.Float64(v)}}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	s[name] = append(s[name], m)
}

// FormatPrometheus writes statuses in the Prometheus text exposition
// format, for node_exporter's textfile collector (docs/expiry.md).
func FormatPrometheus(w io.Writer, at time.Time, statuses []RepoStatus) error {
	return formatPrometheus(w, at, statuses, nil)
}

// formatPrometheus is FormatPrometheus, with the pass's own metrics when
// pass is not nil.
func formatPrometheus(w io.Writer, at time.Time, statuses []RepoStatus, pass *Pass) error {
	s := promSeries{}
	s.add("rootkeeper_status_time_seconds", float64(at.Unix()))
	if pass != nil {
		s.add("rootkeeper_status_pass_seconds", pass.Took.Seconds())
		s.add("rootkeeper_status_pass_repositories", float64(pass.Verified), "read", "verified")
		s.add("rootkeeper_status_pass_repositories", float64(pass.Unchanged), "read", "unchanged")
	}
	sum := Summarize(statuses)
	for _, kv := range []struct {
		state string
		n     int
	}{{"healthy", sum.Healthy}, {"due", sum.Due}, {"invalid", sum.Invalid}, {"error", sum.Errors}} {
		s.add("rootkeeper_repositories", float64(kv.n), "state", kv.state)
	}
	for _, st := range statuses {
		if st.Status == nil {
			s.add("rootkeeper_repository_up", 0, "repository", st.Repository)
			continue
		}
		s.add("rootkeeper_repository_up", 1, "repository", st.Repository)
		s.add("rootkeeper_repository_health", float64(st.Status.Health), "repository", st.Repository)
		s.addRoles(st.Repository, st.Status)
	}
	var b bytes.Buffer
	for _, m := range promMetrics {
		series := s[m.name]
		if len(series) == 0 {
			continue
		}
		fam := &dto.MetricFamily{Name: proto.String(m.name), Help: proto.String(m.help), Type: dto.MetricType_GAUGE.Enum(), Metric: series}
		if _, err := expfmt.MetricFamilyToText(&b, fam); err != nil {
			return err
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// addRoles adds the series of a repository's current roles, each set of
// hashed bins folded into one role.
func (s promSeries) addRoles(repo string, st *ceremony.StatusReport) {
	current := currentRoles(st)
	for _, row := range ceremony.FoldBins(current, ceremony.BinsOfStatus(st), ceremony.RoleStatus.Member) {
		r, role := row.Item, row.Item.Role
		version, valid, threshold, expires := r.Version, r.ValidSignatures, r.Threshold, r.Expires
		if f := row.Set; f != nil {
			role = f.Name
			version, valid, threshold, expires = f.MinVersion, f.Valid, f.Threshold, f.Expires
			s.add("rootkeeper_role_bins", float64(f.Bins), "repository", repo, "role", role)
			s.add("rootkeeper_role_bins_due", float64(f.Due), "repository", repo, "role", role)
			s.add("rootkeeper_role_bins_invalid", float64(f.Invalid), "repository", repo, "role", role)
			s.add("rootkeeper_role_bins_worst_info", 1, "repository", repo, "role", role, "bin", f.Earliest)
		}
		health := r.Health // the worst bin's, for a set
		s.add("rootkeeper_role_health", float64(health), "repository", repo, "role", role)
		s.add("rootkeeper_role_expiry_timestamp_seconds", float64(expires.Unix()), "repository", repo, "role", role)
		s.add("rootkeeper_role_resign_window_seconds", r.Window.D().Seconds(), "repository", repo, "role", role)
		s.add("rootkeeper_role_version", float64(version), "repository", repo, "role", role)
		s.add("rootkeeper_role_signatures_valid", float64(valid), "repository", repo, "role", role)
		s.add("rootkeeper_role_signatures_needed", float64(threshold), "repository", repo, "role", role)
	}
}

// WritePrometheus writes the metrics file at path atomically (a temporary
// file beside it, fsynced, renamed), so that node_exporter never reads half
// a file. Name it *.prom in the collector's directory.
func WritePrometheus(path string, at time.Time, statuses []RepoStatus) error {
	return WritePrometheusPass(path, at, statuses, nil)
}

// WritePrometheusPass is WritePrometheus for a pass of status --every: with
// the pass's duration and how many repositories it verified in full and
// drew from memory (pass may be nil).
func WritePrometheusPass(path string, at time.Time, statuses []RepoStatus, pass *Pass) error {
	var b bytes.Buffer
	if err := formatPrometheus(&b, at, statuses, pass); err != nil {
		return err
	}
	return ceremony.WriteFileAtomic(path, b.Bytes())
}
