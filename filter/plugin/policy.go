package plugin

import (
	"strconv"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/jitgate/jitgate/filter/authorize"
	"github.com/jitgate/jitgate/filter/bqapi"
	"github.com/jitgate/jitgate/filter/config"
	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/conformance"
)

// The filter's part of the policy decision (defense in depth). The control plane decides
// every call with the complete policies.Evaluate (SQL analysis, job ledger, approvals,
// credential) and pushes the same compiled bundle to every Envoy in the filter's ECDS
// configuration. After the control plane allows a call, and before the minted credential
// is attached, the filter evaluates that bundle itself with policies.EvaluateCall: the
// identity the control plane verified (authorize.Response.Identity) and the call as the
// filter classified it (API, project, dataset, table, job id, and for queries the
// dialect, dry run, destination table and write disposition of the decoded body), with
// the checks that need SQL analysis or the job ledger left out (see EvaluateCall). If it
// denies, the filter and the control plane disagree: the call is answered 403 with the
// filter's rule and never forwarded. If it allows, the limits of the matched policies the
// filter can enforce are applied: maxRequestBodyBytes against the buffered request body.
// (maxResponseBodyBytes and maxRows need the response read whole; they are left to the
// control plane's later stages.)

// loadBundle parses and checks the configuration's policy bundle. It returns nil without
// one, and a summary for the "configuration accepted" log line. The raw bundle is dropped
// from cfg once parsed.
func loadBundle(cfg *config.Config) (*policies.Bundle, string, error) {
	if len(cfg.PolicyBundle) == 0 {
		if cfg.PolicyVersion != "" {
			proxywasm.LogCriticalf("jitgate: policyVersion %s without a policyBundle: every request fails closed until a configuration carries the bundle", headerSafe(cfg.PolicyVersion))
			return nil, " policyBundle=missing", nil
		}
		return nil, "", nil
	}
	size := len(cfg.PolicyBundle)
	start := time.Now()
	b, err := policies.ParseBundle(cfg.PolicyBundle)
	took := time.Since(start)
	if err != nil {
		return nil, "", err
	}
	if b.Version != cfg.PolicyVersion {
		return nil, "", &bundleMismatch{bundle: b.Version, config: cfg.PolicyVersion}
	}
	cfg.PolicyBundle = nil
	return b, " policies=" + strconv.Itoa(len(b.Policies)) + " policyBundleBytes=" + strconv.Itoa(size) +
		" policyBundleParseMicros=" + strconv.FormatInt(took.Microseconds(), 10), nil
}

type bundleMismatch struct{ bundle, config string }

func (e *bundleMismatch) Error() string {
	return "policy bundle version " + e.bundle + " is not the configuration's policyVersion " + e.config
}

// selfTest runs the policy conformance vectors through the evaluator compiled into this
// module (configuration selfTest: true, tests only). It logs the result and reports
// whether every vector passed.
func selfTest() bool {
	start := time.Now()
	fails, n := conformance.Run()
	if len(fails) > 0 {
		for i, f := range fails {
			if i == 20 {
				proxywasm.LogCriticalf("jitgate: conformance: ... and %d more", len(fails)-i)
				break
			}
			proxywasm.LogCriticalf("jitgate: conformance: FAIL %s", bounded(f.String()))
		}
		proxywasm.LogCriticalf("jitgate: conformance: %d of %d vectors failed; rejecting plugin configuration", len(fails), n)
		return false
	}
	proxywasm.LogInfof("jitgate: conformance: %d vectors passed (%d µs)", n, time.Since(start).Microseconds())
	return true
}

// policyInput maps the call to the evaluator's input exactly as the control plane's
// policy step does (controlplane/policystep.Input), without analysis and job.
func policyInput(req authorize.Request, id authorize.Identity) policies.Input {
	in := policies.Input{
		Identity: policies.Identity{AgentID: id.AgentID, Issuer: id.Issuer, Groups: append([]string(nil), id.Groups...)},
		Call: policies.Call{API: req.Call.API, Project: req.Call.Project, Dataset: req.Call.Dataset,
			Table: req.Call.Table, JobID: req.Call.JobID, AllUsers: req.Call.AllUsers},
	}
	if q := req.Query; q != nil {
		pq := &policies.Query{LegacySQL: q.LegacySQL, DryRun: q.DryRun, WriteDisposition: q.WriteDisposition, Session: q.Session()}
		if d := q.Destination; d != nil {
			project := d.ProjectID
			if project == "" {
				project = req.Call.Project
			}
			pq.Destination = project + "." + d.DatasetID + "." + d.TableID
		}
		in.Query = pq
	}
	return in
}

// PolicyCheck is the filter's own evaluation of an allowed call (Exchange.Policy).
type PolicyCheck struct {
	Allow bool
	// Rule and RuleName are the decision's code and named rule or field.
	Rule, RuleName string
	// Policy is the deciding policy as name@version, when one decided.
	Policy string
	// NotAnalysed is the decision's notAnalysed ("legacy SQL": allowed unanalysed).
	NotAnalysed string
}

// checkPolicy evaluates the filter's part of the policy decision for a call the control
// plane allowed. It reports whether the call may go on; when not, it has answered it.
func (h *httpContext) checkPolicy(resp *authorize.Response) bool {
	if h.bundle == nil {
		if h.cfg.PolicyVersion != "" { // refused at the headers already; never forward
			h.reject(bqapi.Reject(bqapi.ReasonNotConfigured, "filter not configured: the gateway has no valid policy bundle"))
			return false
		}
		if h.cfg.IdentityOnly {
			return true // the operator's explicit identity-only mode (first setup)
		}
		h.noPolicy(resp)
		return false
	}
	d := policies.EvaluateCall(h.bundle, policyInput(h.authorizeRequest(), *resp.Identity))
	check := &PolicyCheck{Allow: d.Allow, Rule: d.Rule, RuleName: d.RuleName, NotAnalysed: d.NotAnalysed}
	if d.Policy != nil {
		check.Policy = d.Policy.Name + "@" + d.Policy.Version
	}
	h.ex.Policy = check
	if !d.Allow {
		h.policyDisagreement(resp, d, check)
		return false
	}
	if lim := int64(d.Limits.MaxRequestBodyBytes); lim > 0 && (int64(h.ex.RequestBodyBytes) > lim || int64(h.decodedBodyBytes) > lim) {
		h.reject(bqapi.Reject(bqapi.ReasonBodyTooLarge, "the request body exceeds the limit of "+strconv.FormatInt(lim, 10)+
			" bytes set by policy "+limitingPolicy(h.bundle, d)+" (spec.limits.maxRequestBodyBytes)"))
		return false
	}
	return true
}

// noPolicy answers a call the control plane allowed although the filter has no policy
// bundle and is not in identity-only mode: deny by default, 403 no_policy, never
// forwarded. (A control plane without policies denies the call itself; this is the
// filter's own guard against one that does not.)
func (h *httpContext) noPolicy(resp *authorize.Response) {
	agent, issuer := "(unknown)", "(unknown)"
	if id := resp.Identity; id != nil {
		agent, issuer = id.AgentID, id.Issuer
	}
	line := "jitgate: the control plane allowed decision " + headerSafe(resp.DecisionID) +
		" but the filter has no policy bundle and identityOnly is not set: denied by default"
	if h.caller.requestID != "" {
		line += " request_id=" + strconv.Quote(h.caller.requestID)
	}
	proxywasm.LogWarn(line)
	h.ex.Authz.Status, h.ex.Authz.Reason = 403, reasonNoPolicy
	h.deny(denial{
		status: 403, reason: reasonNoPolicy, decisionID: headerSafe(resp.DecisionID),
		message: "Denied by default: no policy applies to agent " + bounded(agent) + " (issuer " + bounded(issuer) +
			"). The gateway has no policies loaded.",
	})
}

// reasonNoPolicy is the control plane's authz.ReasonNoPolicy (the filter cannot import it).
const reasonNoPolicy = "no_policy"

// policyDisagreement answers a call the control plane allowed and the filter's check of
// the same bundle denies: 403 with the filter's rule, never forwarded.
func (h *httpContext) policyDisagreement(resp *authorize.Response, d policies.Decision, check *PolicyCheck) {
	cp := "none"
	if p := resp.Policy; p != nil {
		cp = p.Name + "@" + p.Version + " bundle " + p.Bundle
	}
	rule := d.Rule
	if d.RuleName != "" {
		rule += " (" + d.RuleName + ")"
	}
	who := "no single policy"
	if check.Policy != "" {
		who = "policy " + check.Policy
	}
	reasons := strings.Join(d.Reasons, "; ")
	line := "jitgate: filter and control plane disagree: the control plane allowed decision " + headerSafe(resp.DecisionID) +
		" (policy " + bounded(cp) + ") but the filter's evaluation of bundle " + h.bundle.Version + " denies: " + bounded(who) +
		", rule " + bounded(rule) + ": " + bounded(reasons)
	if h.caller.requestID != "" {
		line += " request_id=" + strconv.Quote(h.caller.requestID)
	}
	proxywasm.LogWarn(line)
	reason := headerSafe(d.Rule)
	h.ex.Authz.Status, h.ex.Authz.Reason = 403, reason
	h.deny(denial{
		status: 403, reason: reason, decisionID: headerSafe(resp.DecisionID),
		message: "Denied by the gateway's own policy check (" + who + " in bundle " + d.BundleVersion + ", rule " + rule + "): " +
			reasons + ". The control plane allowed this call; the gateway refuses it because the two disagree.",
	})
}

// limitingPolicy names the matched policy whose maxRequestBodyBytes is the decision's.
func limitingPolicy(b *policies.Bundle, d policies.Decision) string {
	for _, ref := range d.Matched {
		if p, ok := b.Policy(ref.Name); ok && p.Spec.Limits.MaxRequestBodyBytes == d.Limits.MaxRequestBodyBytes {
			return ref.Name + "@" + ref.Version
		}
	}
	return "(unknown)"
}
