// Package responses serves the filter's response reports (POST /v1/responses,
// filter/authorize.ResponseReport): before the filter releases any response of an allowed
// call to the agent, it reports what the agent will receive, and this handler
//
//  1. finds the call's decision record in the audit trail (the agent is taken from it,
//     never from the report) and refuses reports of unknown or denied decisions;
//  2. records the job the response names in the job ledger (controlplane/jobs: which
//     agent owns it, so follow-up calls on it are allowed only for that agent);
//  3. appends a response record (audit.KindResponse) joined to the decision by its id:
//     upstream status, rows, masked cells, detector hits, bytes, the digest of the body
//     the agent receives and the start of that (masked) body.
//
// The filter releases the response only when the answer says recorded. In strict audit
// mode a record that cannot be written is answered recorded=false (the agent gets 503);
// in relaxed mode the response is released and an ERROR is logged. The ledger is always
// strict: a job it cannot record is never released.
package responses

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitgate/jitgate/controlplane/audit"
	"github.com/jitgate/jitgate/controlplane/jobs"
	"github.com/jitgate/jitgate/filter/authorize"
)

// Refusal reasons (ResponseReportAck.Reason) besides the ledger's (jobs.Reason...).
const (
	ReasonUnknownDecision  = "unknown_decision"
	ReasonNotAllowed       = "decision_not_allowed"
	ReasonDecisionMismatch = "decision_mismatch"
	ReasonAuditUnavailable = "audit_unavailable"
)

// Results counted by jitgate_response_reports_total.
const (
	ResultRecorded   = "recorded"
	ResultUnaudited  = "released_unaudited" // relaxed mode: released without a record
	ResultRefused    = "refused"
	ResultInvalid    = "invalid"
	ResultLedgerDown = "ledger_unavailable"
)

// reportLimit bounds a report: the excerpt (at most MaxExcerptBytes, up to six times
// longer JSON-escaped) plus a few ids.
func reportLimit(maxExcerpt int) int64 { return 6*int64(max(maxExcerpt, 0)) + 1<<20 }

// Trail is the audit trail as the handler uses it; *audit.Writer implements it.
type Trail interface {
	Decision(ctx context.Context, decisionID string) (*audit.Record, error)
	Append(ctx context.Context, r audit.Record) (audit.Appended, error)
}

// Ledger records jobs; *jobs.Ledger implements it.
type Ledger interface {
	Record(ctx context.Context, r jobs.Report) (jobs.Outcome, error)
}

// Options configure a Handler.
type Options struct {
	Trail  Trail
	Ledger Ledger
	// Relaxed releases a response whose audit record cannot be written (audit.mode
	// relaxed); default strict.
	Relaxed bool
	// MaxExcerptBytes is the longest excerpt the filter sends (audit.maxExcerptBytes; 0:
	// authorize.DefaultExcerptBytes); it bounds the report's size.
	MaxExcerptBytes int
	Logger          *slog.Logger
	// Registerer receives jitgate_response_reports_total; nil: a private registry.
	Registerer prometheus.Registerer
}

// Handler serves POST authorize.ResponsesPath.
type Handler struct {
	o       Options
	reports *prometheus.CounterVec
}

// NewHandler returns the response-report handler.
func NewHandler(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxExcerptBytes == 0 {
		o.MaxExcerptBytes = authorize.DefaultExcerptBytes
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	h := &Handler{o: o, reports: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jitgate_response_reports_total",
		Help: "Response reports from the filter by result: recorded, released_unaudited (relaxed mode), refused, invalid, ledger_unavailable.",
	}, []string{"result"})}
	o.Registerer.MustRegister(h.reports)
	return h
}

// Outcome is what Record did with a report.
type Outcome struct {
	Recorded bool
	Reason   string
	// Detail explains a refusal for the log (never sent to agents).
	Detail   string
	AuditSeq uint64
}

// errLedger wraps a job ledger failure: the handler answers 503.
var errLedger = errors.New("job ledger unavailable")

// Record handles one parsed report. An error means the job ledger could not be read or
// written (answer 503).
func (h *Handler) Record(ctx context.Context, rep authorize.ResponseReport) (Outcome, error) {
	dec, err := h.o.Trail.Decision(ctx, rep.DecisionID)
	switch {
	case err != nil && !h.o.Relaxed:
		return Outcome{Reason: ReasonAuditUnavailable, Detail: err.Error()}, nil
	case err != nil:
		h.o.Logger.LogAttrs(ctx, slog.LevelError, "AUDIT: decision record unreadable; recording the response without its agent because audit.mode is relaxed",
			slog.String("decision_id", rep.DecisionID), slog.String("error", err.Error()))
	case dec == nil && !h.o.Relaxed:
		return Outcome{Reason: ReasonUnknownDecision, Detail: "the audit trail holds no decision " + rep.DecisionID}, nil
	case dec != nil && dec.Decision != "allow":
		return Outcome{Reason: ReasonNotAllowed, Detail: "decision " + rep.DecisionID + " is " + dec.Decision}, nil
	case dec != nil && dec.API != rep.API:
		return Outcome{Reason: ReasonDecisionMismatch, Detail: "report for " + rep.API + ", decision for " + dec.API}, nil
	}
	if rep.NamesJob() {
		out, err := h.o.Ledger.Record(ctx, jobs.Report{DecisionID: rep.DecisionID, API: rep.API,
			Job: rep.Job, QueryID: rep.QueryID, ResultTable: rep.ResultTable})
		if err != nil {
			return Outcome{}, errors.Join(errLedger, err)
		}
		if !out.Recorded {
			return Outcome{Reason: out.Reason, Detail: out.Detail}, nil
		}
	}
	a, err := h.o.Trail.Append(context.WithoutCancel(ctx), ResponseRecord(dec, rep))
	if err != nil {
		if !h.o.Relaxed {
			return Outcome{Reason: ReasonAuditUnavailable, Detail: err.Error()}, nil
		}
		h.o.Logger.LogAttrs(ctx, slog.LevelError,
			"AUDIT RECORD NOT WRITTEN: releasing the response because audit.mode is relaxed; this response is missing from the audit trail",
			slog.String("decision_id", rep.DecisionID), slog.String("request_id", rep.RequestID), slog.String("error", err.Error()))
		return Outcome{Recorded: true}, nil
	}
	return Outcome{Recorded: true, AuditSeq: a.Seq}, nil
}

// ResponseRecord is the audit record of a reported response: the decision's agent,
// client and call (dec may be nil in relaxed mode), the job the response named, and
// the response summary. The report has no header, so no credential or token can reach
// the record through it.
func ResponseRecord(dec *audit.Record, rep authorize.ResponseReport) audit.Record {
	s := rep.Response
	r := audit.Record{
		Kind: audit.KindResponse, DecisionID: rep.DecisionID, RequestID: rep.RequestID, API: rep.API,
		Response: &audit.Response{
			UpstreamStatus: s.Status, Rows: s.Rows, CellsMasked: s.CellsMasked, Masked: s.Masked,
			DetectorHits: s.DetectorHits, MessagesWithheld: s.MessagesWithheld, Encoding: s.Encoding,
			Bytes: s.Bytes, Digest: s.Digest, BodyExcerpt: s.Excerpt, ExcerptTruncated: s.ExcerptTruncated,
		},
	}
	if dec != nil {
		r.Agent, r.Client = dec.Agent, dec.Client
		r.Project, r.Dataset, r.Table, r.JobID, r.Location = dec.Project, dec.Dataset, dec.Table, dec.JobID, dec.Location
		r.Policy, r.PolicyBundle, r.CredentialID = dec.Policy, dec.PolicyBundle, dec.CredentialID
		if r.RequestID == "" {
			r.RequestID = dec.RequestID
		}
	}
	if j := rep.Job; j != nil && j.JobID != "" {
		r.JobID = j.JobID
		if j.Location != "" {
			r.Location = j.Location
		}
	}
	return r
}

// ServeHTTP answers 200 with a ResponseReportAck (recorded, or refused with a reason),
// 400 for a document that breaks the contract, 405 for other methods and 503 when the
// job ledger is unavailable.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	start := time.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, reportLimit(h.o.MaxExcerptBytes)))
	var rep authorize.ResponseReport
	if err == nil {
		rep, err = authorize.ParseResponseReport(body)
	}
	if err != nil {
		h.reports.WithLabelValues(ResultInvalid).Inc()
		code := http.StatusBadRequest
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			code = http.StatusRequestEntityTooLarge
		}
		// Contract errors name fields, never values.
		h.o.Logger.LogAttrs(r.Context(), slog.LevelWarn, "response report rejected", slog.Int("status", code),
			slog.String("peer", r.RemoteAddr), slog.String("error", err.Error()))
		writeJSON(w, code, map[string]string{"error": "invalid_report: " + err.Error()})
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", rep.DecisionID), slog.String("request_id", rep.RequestID),
		slog.String("api", rep.API), slog.Int("upstream_status", rep.Response.Status),
		slog.Int64("rows", rep.Response.Rows), slog.Int64("cells_masked", rep.Response.CellsMasked),
		slog.Int64("bytes", rep.Response.Bytes), slog.String("digest", rep.Response.Digest),
	}
	out, err := h.Record(r.Context(), rep)
	if err != nil {
		h.reports.WithLabelValues(ResultLedgerDown).Inc()
		h.o.Logger.LogAttrs(r.Context(), slog.LevelError, "response not released: job ledger unavailable",
			append(attrs, slog.String("error", err.Error()))...)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": jobs.ReasonLedgerUnavailable})
		return
	}
	attrs = append(attrs, slog.Duration("took", time.Since(start)))
	switch {
	case out.Recorded && out.AuditSeq > 0:
		h.reports.WithLabelValues(ResultRecorded).Inc()
		h.o.Logger.LogAttrs(r.Context(), slog.LevelInfo, "response recorded", append(attrs, slog.String("audit_seq", strconv.FormatUint(out.AuditSeq, 10)))...)
	case out.Recorded:
		h.reports.WithLabelValues(ResultUnaudited).Inc()
	default:
		h.reports.WithLabelValues(ResultRefused).Inc()
		h.o.Logger.LogAttrs(r.Context(), slog.LevelWarn, "response report refused",
			append(attrs, slog.String("reason", out.Reason), slog.String("detail", out.Detail))...)
	}
	doc, err := authorize.ResponseReportAck{Recorded: out.Recorded, Reason: out.Reason, AuditSeq: out.AuditSeq}.Marshal()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(doc)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
