package policies

import (
	"fmt"
	"sort"
)

// Evaluate decides one call. Precedence (README "Precedence"):
//  1. No policy whose who matches the agent: deny (default_deny).
//  2. The call must be decidable: known API, decoded query, standard SQL, SQL analysis,
//     known statement kind, fully qualified tables, and for job follow-ups the job's
//     owner (who must be the agent). Legacy SQL is denied unless a matching policy sets
//     what.legacySql; then it is decided unanalysed, as a SELECT reading unknown tables,
//     and refused where a rule needs the analysis (legacy_sql_unchecked).
//  3. Any explicit deny in any matching policy wins: where.datasets.deny,
//     where.tables.deny, what.denyRules (dry-run rules are only reported).
//  4. At least one matching policy must grant the whole call on its own: API, project,
//     statement kind, every table read, every table written. Grants never combine
//     across policies.
//  5. Credentials of the granting policies must agree (mode and service account);
//     the shortest TTL wins. No credential anywhere: the default (self-signed-jwt, 5m).
//  6. Masks, detectors and approval requirements of every matching policy add up;
//     limits take the minimum.
func Evaluate(b *Bundle, in Input) Decision { return evaluate(b, in, false) }

// EvaluateCall is the filter's part of Evaluate: the same bundle, identity and call, with
// every check that needs the SQL analysis or the job ledger left out, for the filter to
// check the control plane's allow again (defense in depth) without either. Only the
// filter uses it; the control plane always decides with Evaluate.
//
// It ignores in.Analysis and in.Job and skips: a query's statement kind, tables read and
// written by the SQL, deny rules (findings) and byte estimates; a job follow-up's owner;
// approval rules; and the credential merge (the credential is minted by the control
// plane). It keeps: the match (default deny), unknown APIs and legacy SQL, explicit
// denies and grants on everything the call itself names (API, project, the dataset or
// table of tables.get, tables.list, datasets.get and tabledata.list, a query's
// destination table and the DML grant it needs), and mask plan, detectors and limits
// (which depend on the matched policies only). Every check it makes is one Evaluate makes
// too, so EvaluateCall allows every call Evaluate allows (the conformance vectors check
// this), and for calls that need neither analysis nor ledger it reaches Evaluate's
// decision, approvals and credential aside. Its decisions have CallOnly set.
func EvaluateCall(b *Bundle, in Input) Decision {
	d := evaluate(b, in, true)
	d.CallOnly = true
	return d
}

func evaluate(b *Bundle, in Input, callOnly bool) Decision {
	if b == nil || b.prep == nil {
		return deny(Decision{}, RuleInvalidBundle, "", nil, "no valid policy bundle is loaded")
	}
	d := Decision{BundleVersion: b.Version}
	pr := b.prep
	agent := in.Identity.AgentID
	if agent == "" {
		return deny(d, RuleInvalidInput, "", nil, "the call has no verified agent identity")
	}
	if !contains(APINames, in.Call.API) {
		return deny(d, RuleUnknownAPI, "", nil, fmt.Sprintf("BigQuery method %q is not one a policy can grant", in.Call.API))
	}
	matched := pr.match(in.Identity)
	if len(matched) == 0 {
		return deny(d, RuleDefaultDeny, "", nil, fmt.Sprintf("no policy matches agent %s", agent))
	}
	for _, p := range matched {
		d.Matched = append(d.Matched, p.ref)
	}

	req, code, why := newRequest(in, callOnly)
	if req != nil && req.legacy && !grantsLegacySQL(matched) {
		return deny(d, RuleLegacySQL, "", nil, "legacy SQL cannot be analysed; send useLegacySql: false (no policy matching the agent sets what.legacySql)")
	}
	// Dry-run deny rules are reported whatever else happens, so a rollout can be judged.
	if req != nil {
		for _, p := range matched {
			for i, r := range p.spec.What.DenyRules {
				if r.DryRun && req.fires(r, p.ruleTables[i]) {
					d.DryRunWouldDeny = append(d.DryRunWouldDeny, DryRunHit{Policy: p.ref, Rule: r.Name, Kind: r.Kind})
				}
			}
		}
	}
	if code != "" {
		// A named deny rule that matched is the better answer than "undecidable": the
		// outcome is the same denial, but the agent and the security team see which rule.
		if req != nil {
			for _, p := range matched {
				for i, r := range p.spec.What.DenyRules {
					if !r.DryRun && req.fires(r, p.ruleTables[i]) {
						ref := p.ref
						return deny(d, RuleDenyRule, r.Name, &ref, fmt.Sprintf("policy %s: deny rule %s (%s) matched the query", p.ref.Name, r.Name, r.Kind))
					}
				}
			}
		}
		return deny(d, code, "", nil, why)
	}

	for _, p := range matched {
		if code, ruleName, why := p.explicitDeny(req); code != "" {
			ref := p.ref
			return deny(d, code, ruleName, &ref, fmt.Sprintf("policy %s: %s", p.ref.Name, why))
		}
	}

	var granting []*prepPolicy
	var best *refusal
	var bestPolicy *prepPolicy
	for _, p := range matched {
		f := p.grant(req)
		if f == nil {
			granting = append(granting, p)
			continue
		}
		if best == nil || f.stage > best.stage {
			best, bestPolicy = f, p
		}
	}
	if len(granting) == 0 {
		ref := bestPolicy.ref
		reasons := []string{fmt.Sprintf("policy %s: %s", bestPolicy.ref.Name, best.why)}
		for _, p := range matched {
			if p != bestPolicy {
				reasons = append(reasons, fmt.Sprintf("policy %s: %s", p.ref.Name, p.grant(req).why))
			}
		}
		d = deny(d, best.code, best.field, &ref, reasons...)
		return d
	}
	for _, p := range granting {
		d.Granting = append(d.Granting, p.ref)
	}

	var cred *Credential
	if !callOnly {
		var conflict string
		if cred, conflict = mergeCredentials(granting); conflict != "" {
			ref := granting[0].ref
			return deny(d, RuleCredentialConflict, "credential", &ref, conflict)
		}
	}

	d.Allow, d.Rule = true, RuleAllow
	first := granting[0].ref
	d.Policy = &first
	d.Credential = cred
	d.Reasons = []string{fmt.Sprintf("granted by policy %s", first.Name)}
	if req.legacy {
		d.NotAnalysed = NotAnalysedLegacySQL
		d.Reasons = append(d.Reasons, "not analysed: legacy SQL (what.legacySql): the tables it reads, deny rules and masking were not checked")
	}
	var plan MaskPlan
	for _, p := range matched {
		for _, m := range p.spec.What.Masking {
			plan = plan.add(m, p.ref.Name)
		}
		for _, det := range p.spec.What.Detectors {
			if !contains(d.Detectors, det) {
				d.Detectors = append(d.Detectors, det)
			}
		}
		if req.approvable && !callOnly {
			for i := range p.approvals {
				a := &p.approvals[i]
				if a.applies(req) {
					d.Approvals = append(d.Approvals, ApprovalRequirement{Policy: p.ref, Rule: a.rule.Name,
						ApproverGroups: a.rule.ApproverGroups, TTL: a.rule.TTL, Mode: a.rule.Mode, Uses: a.rule.Uses, HoldTimeout: a.rule.HoldTimeout})
				}
			}
		}
		d.Limits = minLimits(d.Limits, p.spec.Limits)
	}
	d.MaskPlan = plan.sorted()
	sort.Slice(d.Detectors, func(i, j int) bool { return d.Detectors[i] < d.Detectors[j] })
	return d
}

// grantsLegacySQL: some matching policy sets what.legacySql. Without one a legacy query
// is denied legacy_sql before anything else, as it always was.
func grantsLegacySQL(matched []*prepPolicy) bool {
	for _, p := range matched {
		if p.spec.What.LegacySQL {
			return true
		}
	}
	return false
}

func deny(d Decision, code, ruleName string, p *PolicyRef, reasons ...string) Decision {
	d.Allow, d.Rule, d.RuleName, d.Policy = false, code, ruleName, p
	d.Reasons = reasons
	d.MaskPlan, d.Detectors, d.Approvals, d.Credential, d.Limits, d.Granting = nil, nil, nil, nil, Limits{}, nil
	d.NotAnalysed = ""
	return d
}
