package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jitgate/jitgate/controlplane/identity"
)

// TokenVerifier verifies a bearer token (*identity.Verifier): approvers authenticate with
// their own OIDC token, verified exactly like an agent's.
type TokenVerifier interface {
	Verify(ctx context.Context, rawToken string) (identity.Identity, error)
}

// API paths.
const (
	// ListPath: GET lists the approvals the caller may decide (?state=pending, the
	// default, or ?state=all for every state).
	ListPath = "/v1/approvals"
	// ItemPath: GET one approval; POST ItemPath+"/approve" or "/deny" decides it.
	ItemPath = "/v1/approvals/"
)

// DecideRequest is the body of POST /v1/approvals/{id}/approve and /deny.
type DecideRequest struct {
	Uses   int    `json:"uses,omitempty"`
	TTL    string `json:"ttl,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ListResponse is the body of GET /v1/approvals.
type ListResponse struct {
	Approvals []*Approval `json:"approvals"`
}

// Handler serves the approvers' API. Every call needs "Authorization: Bearer <token>" of
// the approver, verified by v; an approver sees and decides only the approvals whose
// approver groups include them, and never their own.
func (b *Broker) Handler(v TokenVerifier, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	auth := func(w http.ResponseWriter, r *http.Request) (Approver, bool) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || strings.TrimSpace(raw) == "" {
			writeErr(w, http.StatusUnauthorized, "send the approver's OIDC token as Authorization: Bearer <token>")
			return Approver{}, false
		}
		id, err := v.Verify(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			reason := identity.Reason(err)
			if reason == identity.ReasonIssuerUnavailable || reason == identity.ReasonInternal {
				writeErr(w, http.StatusServiceUnavailable, "the approver's token could not be verified right now: "+reason)
				return Approver{}, false
			}
			writeErr(w, http.StatusUnauthorized, "the approver's token was refused: "+reason)
			return Approver{}, false
		}
		return Approver{ID: id.AgentID, Issuer: id.Issuer, Groups: id.Groups}, true
	}
	mux.HandleFunc("GET "+ListPath, func(w http.ResponseWriter, r *http.Request) {
		who, ok := auth(w, r)
		if !ok {
			return
		}
		all, err := b.List(r.Context())
		if err != nil {
			writeErr(w, statusOf(err), err.Error())
			return
		}
		state := r.URL.Query().Get("state")
		out := ListResponse{Approvals: []*Approval{}}
		for _, a := range all {
			if state != "all" && a.State != StatePending {
				continue
			}
			if a.MayDecide(who) != nil {
				continue
			}
			out.Approvals = append(out.Approvals, a)
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET "+ItemPath+"{id}", func(w http.ResponseWriter, r *http.Request) {
		who, ok := auth(w, r)
		if !ok {
			return
		}
		a, err := b.Get(r.Context(), r.PathValue("id"))
		if err == nil {
			// The requesting agent may read its own approval; approvers theirs.
			if !(who.ID == a.Agent.ID && who.Issuer == a.Agent.Issuer) {
				err = a.MayDecide(who)
			}
		}
		if err != nil {
			writeErr(w, statusOf(err), err.Error())
			return
		}
		a.State = a.effective(b.now())
		writeJSON(w, http.StatusOK, a)
	})
	decide := func(approve bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			who, ok := auth(w, r)
			if !ok {
				return
			}
			var req DecideRequest
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
			if err == nil && len(strings.TrimSpace(string(body))) > 0 {
				dec := json.NewDecoder(strings.NewReader(string(body)))
				dec.DisallowUnknownFields()
				err = dec.Decode(&req)
			}
			if err != nil {
				writeErr(w, http.StatusBadRequest, "body: "+err.Error())
				return
			}
			d := Decision{Approve: approve, Uses: req.Uses, Reason: req.Reason}
			if req.TTL != "" {
				if d.TTL, err = time.ParseDuration(req.TTL); err != nil || d.TTL <= 0 {
					writeErr(w, http.StatusBadRequest, "ttl: want a positive Go duration such as 30m or 2h")
					return
				}
			}
			a, err := b.Decide(r.Context(), r.PathValue("id"), who, d)
			if err != nil {
				log.LogAttrs(r.Context(), slog.LevelWarn, "approval decision refused", slog.String("approval_id", r.PathValue("id")),
					slog.String("approver", who.ID), slog.Bool("approve", approve), slog.String("error", err.Error()))
				writeErr(w, statusOf(err), err.Error())
				return
			}
			writeJSON(w, http.StatusOK, a)
		}
	}
	mux.HandleFunc("POST "+ItemPath+"{id}/approve", decide(true))
	mux.HandleFunc("POST "+ItemPath+"{id}/deny", decide(false))
	return mux
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrSelf), errors.Is(err, ErrNotApprover):
		return http.StatusForbidden
	case errors.Is(err, ErrNotPending):
		return http.StatusConflict
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
