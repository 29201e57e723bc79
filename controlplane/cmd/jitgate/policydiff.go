package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/jitgate/jitgate/policies"
)

const diffHelp = `Usage: jitgate policy diff [flags] OLD NEW

Compares two policy directories (compiled bundles) and prints which agents and groups gain
(+) or lose (-) access to which APIs, projects, datasets and tables, and which calls change
their approval requirement (~). Exit 0 when access is unchanged, 1 when it changes, 2 when
a directory does not load or the flags are wrong (like diff(1)).

Method: both bundles are evaluated with the control plane's evaluator over the same probes,
and every probe whose decision differs is reported.
  - Principals: one per policy "who" in either bundle: the agent pattern as written (etl-*
    stands for "any agent matching etl-*"; no agents: "*"), its first issuer, and the
    groups in groups.all plus one of groups.any at a time.
  - Calls: every API either bundle grants, on every project, dataset and table either
    bundle names (allow, deny and write patterns; a "*" segment becomes "any", so
    acme.crm.* is probed as acme.crm.any): SELECT reads, writes with each statement kind
    either bundle allows, tables.get, tabledata.list, dataset calls, and job follow-ups on
    the agent's own jobs.
It is exact for the names the policies spell out and a sample for wildcards: two patterns
that only overlap on a name neither spells can differ unseen. Masks, detectors and limits
are not compared (see "jitgate policy explain").

Flags:
`

// principal is a probe identity.
type principal struct {
	id    policies.Identity
	label string
}

// probe is one call evaluated for every principal.
type probe struct {
	label string
	in    policies.Input
}

func policyDiff(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jitgate policy diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, diffHelp)
		fs.PrintDefaults()
	}
	if code, done := parseWithPositional(fs, args, 2); done {
		return code
	}
	oldRes, ok := loadDir(fs.Arg(0), stderr)
	if !ok {
		return 2
	}
	newRes, ok := loadDir(fs.Arg(1), stderr)
	if !ok {
		return 2
	}
	changes := diffBundles(oldRes.Bundle, newRes.Bundle)
	printPolicyChanges(stdout, oldRes.Bundle, newRes.Bundle)
	if len(changes) == 0 {
		fmt.Fprintln(stdout, "access: unchanged")
		return 0
	}
	var gained, lost, other int
	for _, who := range sortedKeys(changes) {
		fmt.Fprintf(stdout, "%s:\n", who)
		for _, c := range changes[who] {
			fmt.Fprintf(stdout, "  %s\n", c)
			switch c[0] {
			case '+':
				gained++
			case '-':
				lost++
			default:
				other++
			}
		}
	}
	fmt.Fprintf(stdout, "access: %d gained, %d lost, %d approval changes\n", gained, lost, other)
	return 1
}

// printPolicyChanges lists policies added, removed and changed (by content version).
func printPolicyChanges(w io.Writer, a, b *policies.Bundle) {
	fmt.Fprintf(w, "bundle %s → %s\n", a.Version, b.Version)
	old := map[string]string{}
	for _, p := range a.Policies {
		old[p.Name] = p.Version
	}
	seen := map[string]bool{}
	for _, p := range b.Policies {
		seen[p.Name] = true
		switch v, ok := old[p.Name]; {
		case !ok:
			fmt.Fprintf(w, "policy added:   %s@%s\n", p.Name, p.Version)
		case v != p.Version:
			fmt.Fprintf(w, "policy changed: %s@%s → %s\n", p.Name, v, p.Version)
		}
	}
	for _, p := range a.Policies {
		if !seen[p.Name] {
			fmt.Fprintf(w, "policy removed: %s@%s\n", p.Name, p.Version)
		}
	}
}

// diffBundles evaluates every probe against both bundles; the result maps a principal's
// label to its changes, "+ call (granted by p@v)", "- call (now rule by p@v)", "~ call ...".
func diffBundles(a, b *policies.Bundle) map[string][]string {
	prins := principals(a, b)
	probes := probes(a, b)
	out := map[string][]string{}
	for _, pr := range prins {
		for _, p := range probes {
			in := p.in
			in.Identity = pr.id
			if in.Job != nil {
				in.Job = &policies.Job{OwnerAgentID: pr.id.AgentID, OwnerIssuer: pr.id.Issuer}
			}
			da, db := policies.Evaluate(a, in), policies.Evaluate(b, in)
			var line string
			switch {
			case !da.Allow && db.Allow:
				line = fmt.Sprintf("+ %s (granted by %s)", p.label, refString(db.Policy))
			case da.Allow && !db.Allow:
				line = fmt.Sprintf("- %s (now %s by %s)", p.label, db.Rule, refString(db.Policy))
			case da.Allow && db.Allow && approvalKey(da) != approvalKey(db):
				line = fmt.Sprintf("~ %s (approvals %s → %s)", p.label, approvalKey(da), approvalKey(db))
			default:
				continue
			}
			out[pr.label] = append(out[pr.label], line)
		}
	}
	return out
}

func refString(r *policies.PolicyRef) string {
	if r == nil {
		return "(no policy)"
	}
	return r.Name + "@" + r.Version
}

func approvalKey(d policies.Decision) string {
	if len(d.Approvals) == 0 {
		return "none"
	}
	var ks []string
	for _, a := range d.Approvals {
		ks = append(ks, a.Policy.Name+"/"+a.Rule)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// principals derives one probe identity per who clause (and per groups.any entry).
func principals(bs ...*policies.Bundle) []principal {
	seen := map[string]bool{}
	var out []principal
	add := func(agent, issuer string, groups []string) {
		groups = slices.Clone(groups)
		sort.Strings(groups)
		groups = slices.Compact(groups)
		label := "agent " + agent
		if len(groups) > 0 {
			label += " groups " + strings.Join(groups, ",")
		}
		if issuer != "" {
			label += " issuer " + issuer
		}
		if seen[label] {
			return
		}
		seen[label] = true
		out = append(out, principal{policies.Identity{AgentID: agent, Issuer: issuer, Groups: groups}, label})
	}
	for _, b := range bs {
		for _, p := range b.Policies {
			who := p.Spec.Who
			agents := who.Agents
			if len(agents) == 0 {
				agents = []string{"*"}
			}
			issuer := ""
			if len(who.Issuers) > 0 {
				issuer = who.Issuers[0]
			}
			for _, ag := range agents {
				if len(who.Groups.Any) == 0 {
					add(ag, issuer, who.Groups.All)
				}
				for _, g := range who.Groups.Any {
					add(ag, issuer, append(slices.Clone(who.Groups.All), g))
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].label < out[j].label })
	return out
}

// concrete turns a pattern into a representative name: a "*" segment becomes "any", a "*"
// inside a segment "x".
func concrete(pattern string) string {
	segs := policies.SplitQualified(pattern)
	for i, s := range segs {
		if s == "*" {
			segs[i] = "any"
		} else {
			segs[i] = strings.ReplaceAll(s, "*", "x")
		}
	}
	return strings.Join(segs, ".")
}

// probes lists the calls to evaluate: every API either bundle grants, on every resource
// either bundle names.
func probes(bs ...*policies.Bundle) []probe {
	apis := map[string]bool{}
	projects := map[string]bool{}
	datasets := map[string]bool{}
	reads := map[string]bool{}
	writes := map[string]bool{}
	kinds := map[string]bool{}
	for _, b := range bs {
		for _, p := range b.Policies {
			w := p.Spec.Where
			for _, a := range w.APIs {
				apis[a] = true
			}
			for _, pr := range w.Projects {
				projects[concrete(pr)] = true
			}
			for _, t := range slices.Concat(w.Tables.Allow, w.Tables.Deny) {
				reads[concrete(t)] = true
			}
			for _, t := range w.WriteTables {
				writes[concrete(t)] = true
			}
			for _, d := range slices.Concat(w.Datasets.Allow, w.Datasets.Deny) {
				reads[concrete(d)+".any"] = true
			}
			for _, k := range p.Spec.What.StatementKinds {
				if fam, _ := policies.StatementFamily(k); fam != policies.FamilySelect {
					kinds[k] = true
				}
			}
		}
	}
	for t := range reads {
		segs := policies.SplitQualified(t)
		projects[segs[0]] = true
		datasets[segs[0]+"."+segs[1]] = true
	}
	for t := range writes {
		segs := policies.SplitQualified(t)
		projects[segs[0]] = true
		datasets[segs[0]+"."+segs[1]] = true
	}
	split := func(t string) (string, string, string) {
		s := policies.SplitQualified(t)
		return s[0], s[1], s[2]
	}
	var out []probe
	for _, api := range sortedKeys(apis) {
		switch api {
		case "jobs.query", "jobs.insert":
			for _, t := range sortedKeys(reads) {
				p, _, _ := split(t)
				out = append(out, probe{api + " SELECT reads " + t, policies.Input{
					Call:     policies.Call{API: api, Project: p},
					Query:    &policies.Query{},
					Analysis: &policies.Analysis{StatementKind: "SELECT", ReferencedTables: []string{t}}}})
			}
			for _, t := range sortedKeys(writes) {
				p, _, _ := split(t)
				for _, k := range sortedKeys(kinds) {
					out = append(out, probe{api + " " + k + " writes " + t, policies.Input{
						Call:     policies.Call{API: api, Project: p},
						Query:    &policies.Query{},
						Analysis: &policies.Analysis{StatementKind: k, WrittenTables: []string{t}}}})
				}
			}
		case "tables.get", "tabledata.list":
			for _, t := range sortedKeys(reads) {
				p, d, tb := split(t)
				out = append(out, probe{api + " " + t, policies.Input{Call: policies.Call{API: api, Project: p, Dataset: d, Table: tb}}})
			}
		case "datasets.get", "tables.list":
			for _, ds := range sortedKeys(datasets) {
				s := policies.SplitQualified(ds)
				out = append(out, probe{api + " " + ds, policies.Input{Call: policies.Call{API: api, Project: s[0], Dataset: s[1]}}})
			}
		case "jobs.get", "jobs.getQueryResults", "jobs.cancel", "jobs.delete":
			for _, p := range sortedKeys(projects) {
				out = append(out, probe{api + " own job in " + p, policies.Input{
					Call: policies.Call{API: api, Project: p, JobID: "job"}, Job: &policies.Job{}}})
			}
		case "projects.list":
			out = append(out, probe{api, policies.Input{Call: policies.Call{API: api}}})
		default: // jobs.list, datasets.list: project-level
			for _, p := range sortedKeys(projects) {
				out = append(out, probe{api + " in " + p, policies.Input{Call: policies.Call{API: api, Project: p}}})
			}
		}
	}
	return out
}
