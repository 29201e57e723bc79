package source

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/jitgate/jitgate/policies"
)

// decoder walks a yaml.Node into the policies types by their json tags, rejecting what
// does not fit and recording the position of every field it sets.
type decoder struct {
	info  *docInfo
	errs  *ErrorList
	nodes int
}

// maxNodes bounds the work per document (aliases can multiply it).
const maxNodes = 200000

func pos(file string, n *yaml.Node) Position { return Position{file, n.Line, n.Column} }

func (d *decoder) fail(n *yaml.Node, path, msg, hint string) {
	*d.errs = append(*d.errs, Error{pos(d.info.file, n), msg, hint})
	d.info.bad = append(d.info.bad, path)
}

var kinds = []string{policies.KindAgentPolicy, policies.KindApproverGroup}

// kindOf returns the document's kind, or "" after reporting why it has none.
func (d *decoder) kindOf(root *yaml.Node) string {
	d.info.pos[""] = pos(d.info.file, root)
	if root.Kind != yaml.MappingNode {
		d.fail(root, "", fmt.Sprintf("a policy document must be a mapping, got %s", describe(root)), "start with apiVersion: "+policies.APIVersion)
		return ""
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "kind" {
			continue
		}
		v := root.Content[i+1]
		for _, k := range kinds {
			if v.Kind == yaml.ScalarNode && v.Value == k {
				return k
			}
		}
		hint := "use kind: AgentPolicy or kind: ApproverGroup"
		if s := policies.Suggest(v.Value, kinds); s != "" && v.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		d.fail(v, "kind", fmt.Sprintf("unknown kind %q", v.Value), hint)
		return ""
	}
	d.fail(root, "", "document has no kind", "add kind: AgentPolicy or kind: ApproverGroup")
	return ""
}

func (d *decoder) decodeDoc(root *yaml.Node, out any, kind string) {
	d.decode(root, reflect.ValueOf(out).Elem(), "", kind, 0)
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path, kind string, depth int) {
	d.nodes++
	if d.nodes > maxNodes || depth > 64 {
		if d.nodes == maxNodes+1 || depth == 65 {
			d.fail(n, path, "document is too large or too deeply nested", "remove anchors and aliases that repeat large parts")
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		d.decode(n.Alias, v, path, kind, depth+1)
		return
	}
	d.info.pos[path] = pos(d.info.file, n)
	field := lastName(path, kind)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the zero value
	}
	if reflect.PointerTo(v.Type()).Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, fmt.Sprintf("%s must be a single value, got %s", field, describe(n)), "")
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			var ve *policies.ValueError
			if errors.As(err, &ve) {
				d.fail(n, path, ve.Msg+" for "+field, ve.Hint)
			} else {
				d.fail(n, path, fmt.Sprintf("bad value for %s: %v", field, err), "")
			}
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path, kind, depth)
	case reflect.Struct:
		d.decodeStruct(n, v, path, kind, field, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			hint := ""
			if n.Kind == yaml.ScalarNode {
				hint = fmt.Sprintf("write %s: [%s]", field, n.Value)
			}
			d.fail(n, path, fmt.Sprintf("%s must be a list, got %s", field, describe(n)), hint)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i), kind, depth+1)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, fmt.Sprintf("%s must be a string, got %s", field, describe(n)), "")
			return
		}
		switch n.Tag {
		case "!!str", "!!int", "!!float":
			v.SetString(n.Value)
		default:
			d.fail(n, path, fmt.Sprintf("%s must be a string, got %s", field, describe(n)), fmt.Sprintf("quote it: %q", n.Value))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, path, fmt.Sprintf("%s must be true or false, got %s", field, describe(n)), "")
			return
		}
		b, _ := strconv.ParseBool(n.Value)
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, path, fmt.Sprintf("%s must be an integer, got %s", field, describe(n)), "")
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || v.OverflowInt(i) {
			d.fail(n, path, fmt.Sprintf("%s: integer %s out of range", field, n.Value), "")
			return
		}
		v.SetInt(i)
	default:
		d.fail(n, path, fmt.Sprintf("%s: unsupported field type %s", field, v.Type()), "")
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path, kind, field string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, fmt.Sprintf("%s must be a mapping, got %s", field, describe(n)), "")
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			d.fail(k, path, fmt.Sprintf("unsupported key in %s", field), "merge keys (<<) and complex keys are not supported; write the fields out")
			continue
		}
		idx, ok := fields.index[k.Value]
		if !ok {
			hint := "valid fields: " + strings.Join(fields.names, ", ")
			if s := policies.Suggest(k.Value, fields.names); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
			d.fail(k, joinPath(path, k.Value), fmt.Sprintf("unknown field %q in %s", k.Value, field), hint)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, joinPath(path, k.Value), fmt.Sprintf("duplicate field %q in %s", k.Value, field), fmt.Sprintf("remove one; the first is on line %d", first.Line))
			continue
		}
		seen[k.Value] = k
		d.decode(val, v.Field(idx), joinPath(path, k.Value), kind, depth+1)
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// lastName is the field's own name for messages ("where", "approvals[0]").
func lastName(path, kind string) string {
	if path == "" {
		return kind
	}
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[i+1:]
	}
	return path
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int":
		return "the integer " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%q", n.Value)
}

type structFields struct {
	index map[string]int
	names []string
}

var fieldCache sync.Map // reflect.Type -> *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	f := &structFields{index: map[string]int{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f.index[name] = i
		f.names = append(f.names, name)
	}
	fieldCache.Store(t, f)
	return f
}
