// Package source reads policy documents from YAML strictly: every *.yaml / *.yml file of a
// directory (several documents per file allowed), unknown fields, wrong types, bad
// values and unknown references rejected, each error with file:line:column and a
// one-line fix hint, all errors collected and sorted. It is control-plane side (it uses
// gopkg.in/yaml.v3); the model, validation and compiler it feeds live in policies.
package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/policies"
)

// File is one policy file.
type File struct {
	Name string
	Data []byte
}

// Position is a place in a file, 1-based.
type Position struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
}

func (p Position) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column) }

// Error is one problem in a policy file.
type Error struct {
	Position
	Msg  string
	Hint string
}

func (e Error) Error() string {
	s := e.Position.String() + ": " + e.Msg
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// ErrorList is every problem found, sorted by file, line and column.
type ErrorList []Error

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return a.Msg < b.Msg
	})
}

// Result is a loaded, validated and compiled policy directory.
type Result struct {
	Set    policies.Set
	Bundle *policies.Bundle
	// Sources says where each policy and approver group is defined, by name.
	Sources map[string]Position
}

// MaxFileBytes bounds one policy file.
const MaxFileBytes = 4 << 20

// Options are what a directory is checked against beyond its own content.
type Options struct {
	// TrustedIssuers are the OIDC issuers the gateway trusts; with more than one, every
	// policy must list who.issuers and every approver group spec.issuers
	// (policies.CheckIssuers). Empty: not checked.
	TrustedIssuers []string
}

// Load reads every *.yaml and *.yml file directly in dir (sorted by name), validates and
// compiles them. A non-nil error is an ErrorList (or an I/O error).
func Load(dir string) (*Result, error) { return LoadWith(dir, Options{}) }

// LoadWith is Load with the gateway's Options.
func LoadWith(dir string, o Options) (*Result, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load policies %s: %w", dir, err)
	}
	var files []File
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load policies %s: %w", dir, err)
		}
		files = append(files, File{Name: path, Data: data})
	}
	return ParseWith(o, files...)
}

// docInfo remembers where a decoded document's fields are.
type docInfo struct {
	file string
	pos  map[string]Position
	bad  []string // paths that failed to decode
}

// Parse decodes, validates and compiles files (in name order). A non-nil error is an ErrorList.
func Parse(files ...File) (*Result, error) { return ParseWith(Options{}, files...) }

// ParseWith is Parse with the gateway's Options.
func ParseWith(o Options, files ...File) (*Result, error) {
	var errs ErrorList
	var set policies.Set
	var policyDocs, groupDocs []*docInfo
	// Sorted by name, so "first defined" and the error order do not depend on the caller.
	files = append([]File(nil), files...)
	sort.SliceStable(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		if len(f.Data) > MaxFileBytes {
			errs = append(errs, Error{Position{f.Name, 1, 1}, fmt.Sprintf("file is %d bytes, more than %d", len(f.Data), MaxFileBytes), "split it into several files"})
			continue
		}
		dec := yaml.NewDecoder(bytes.NewReader(f.Data))
		for {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				errs = append(errs, syntaxError(f.Name, err))
				break
			}
			if len(doc.Content) == 0 {
				continue
			}
			d := &decoder{info: &docInfo{file: f.Name, pos: map[string]Position{}}, errs: &errs}
			root := doc.Content[0]
			switch kind := d.kindOf(root); kind {
			case policies.KindAgentPolicy:
				var p policies.AgentPolicy
				d.decodeDoc(root, &p, kind)
				set.Policies = append(set.Policies, p)
				policyDocs = append(policyDocs, d.info)
			case policies.KindApproverGroup:
				var g policies.ApproverGroup
				d.decodeDoc(root, &g, kind)
				set.ApproverGroups = append(set.ApproverGroups, g)
				groupDocs = append(groupDocs, d.info)
			}
		}
	}
	info := func(ref policies.DocRef) *docInfo {
		if ref.Kind == policies.KindApproverGroup {
			return groupDocs[ref.Index]
		}
		return policyDocs[ref.Index]
	}
	for _, fe := range append(policies.Validate(set), policies.CheckIssuers(set, o.TrustedIssuers)...) {
		di := info(fe.Doc)
		if di.underBad(fe.Path) {
			continue // a consequence of a decode error already reported
		}
		hint := fe.Hint
		if fe.Related != nil {
			rel := info(fe.Related.Doc)
			hint = fmt.Sprintf("already defined at %s; %s", rel.position(fe.Related.Path), hint)
		}
		errs = append(errs, Error{di.position(fe.Path), fe.Msg, hint})
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	b, ferrs := policies.Compile(set)
	if len(ferrs) > 0 {
		// Validate passed, so Compile cannot fail; keep the guard for safety.
		return nil, ErrorList{{Position{"", 0, 0}, ferrs[0].Error(), ""}}
	}
	r := &Result{Set: set, Bundle: b, Sources: map[string]Position{}}
	for i, p := range set.Policies {
		r.Sources[policies.KindAgentPolicy+"/"+p.Metadata.Name] = policyDocs[i].position("")
	}
	for i, g := range set.ApproverGroups {
		r.Sources[policies.KindApproverGroup+"/"+g.Metadata.Name] = groupDocs[i].position("")
	}
	return r, nil
}

// position finds the nearest recorded position of path or one of its ancestors.
func (di *docInfo) position(path string) Position {
	for {
		if p, ok := di.pos[path]; ok {
			return p
		}
		if path == "" {
			return Position{di.file, 1, 1}
		}
		path = parentPath(path)
	}
}

func (di *docInfo) underBad(path string) bool {
	for _, b := range di.bad {
		if isWithin(path, b) || isWithin(b, path) {
			return true
		}
	}
	return false
}

// isWithin reports whether path is p or below it.
func isWithin(path, p string) bool {
	if p == "" || path == p {
		return true
	}
	return strings.HasPrefix(path, p) && (path[len(p)] == '.' || path[len(p)] == '[')
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

var parserProblems = map[string]bool{
	"did not find expected key": true, "did not find expected ',' or ']'": true,
	"did not find expected ',' or '}'": true, "did not find expected '-' indicator": true,
	"did not find expected node content": true, "did not find expected <document start>": true,
}

// syntaxError turns a yaml.v3 error ("yaml: line 3: ...") into an Error.
func syntaxError(file string, err error) Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if _, e := fmt.Sscanf(rest[:i], "%d", &line); e == nil {
				msg = strings.TrimSpace(rest[i+1:])
				// yaml.v3 reports parser (not scanner) errors with the 0-based line of the
				// construct that is left open; make it 1-based.
				if parserProblems[msg] {
					line++
				}
			}
		}
	}
	return Error{Position{file, line, 1}, "YAML syntax: " + msg, "fix the indentation or quoting on this line"}
}
