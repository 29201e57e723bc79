package jobs

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/jitgate/jitgate/filter/authorize"
)

// maxReportBytes bounds a job report (a few ids).
const maxReportBytes = 64 << 10

// Handler serves POST authorize.JobsPath: the filter reports the job in an allowed call's
// upstream response, before releasing the response to the agent. It answers 200 with a
// JobReportAck (Recorded false and a reason when the report is refused: the filter then
// fails closed), 400 for a document that breaks the contract and 503 when the ledger is
// unavailable.
func (l *Ledger) Handler() http.Handler {
	return http.HandlerFunc(l.serveReport)
}

func (l *Ledger) serveReport(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReportBytes))
	var rep authorize.JobReport
	if err == nil {
		rep, err = authorize.ParseJobReport(body)
	}
	if err != nil {
		l.metrics.record(ResultInvalid)
		code := http.StatusBadRequest
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			code = http.StatusRequestEntityTooLarge
		}
		// Contract errors name fields, never values.
		l.log.LogAttrs(r.Context(), slog.LevelWarn, "job report rejected", slog.Int("status", code),
			slog.String("peer", r.RemoteAddr), slog.String("error", err.Error()))
		writeJSON(w, code, map[string]string{"error": "invalid_report: " + err.Error()})
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", rep.DecisionID), slog.String("request_id", rep.RequestID),
		slog.String("api", rep.API), slog.String("query_id", rep.QueryID),
	}
	if rep.Job != nil {
		attrs = append(attrs, slog.String("project", rep.Job.ProjectID), slog.String("job_id", rep.Job.JobID),
			slog.String("location", rep.Job.Location))
	}
	out, err := l.Record(r.Context(), rep)
	if err != nil {
		l.log.LogAttrs(r.Context(), slog.LevelError, "job report not recorded: ledger unavailable",
			append(attrs, slog.String("error", err.Error()))...)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": ReasonLedgerUnavailable})
		return
	}
	ack := authorize.JobReportAck{Recorded: out.Recorded, Reason: out.Reason}
	if j := out.Job; j != nil {
		attrs = append(attrs, slog.String("agent", j.Agent), slog.String("issuer", j.Issuer),
			slog.String("policy", j.Policy), slog.String("result_table", j.ResultTable),
			slog.String("statement_kind", j.StatementKind))
	}
	if out.Recorded {
		l.log.LogAttrs(r.Context(), slog.LevelInfo, "job recorded", attrs...)
	} else {
		l.log.LogAttrs(r.Context(), slog.LevelWarn, "job report refused",
			append(attrs, slog.String("reason", out.Reason), slog.String("detail", out.Detail))...)
	}
	doc, err := ack.Marshal()
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
