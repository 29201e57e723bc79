package sqlanalysis

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"golang.org/x/sync/singleflight"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
)

// BigQueryTableSource reads table metadata with tables.get and caches it.
type BigQueryTableSource struct {
	client *bigquery.Client
	// TTL is how long metadata is reused (default 5 minutes); NegativeTTL how long a
	// "not found" is (default 30 seconds).
	TTL, NegativeTTL time.Duration
	// Now is the clock (tests).
	Now func() time.Time

	mu      sync.Mutex
	entries map[string]sourceEntry
	lists   map[string]listEntry
	group   singleflight.Group
}

type listEntry struct {
	tables  []string
	err     error // not found, too many tables
	expires time.Time
}

type sourceEntry struct {
	meta    *TableMeta
	err     error
	expires time.Time
}

const maxSourceEntries = 65536

// NewBigQueryTableSource returns a TableSource over client (the gateway's own
// credential). Against the emulator: bigquery.NewClient(ctx, project,
// option.WithEndpoint(url+"/bigquery/v2/"), option.WithoutAuthentication()).
func NewBigQueryTableSource(client *bigquery.Client) *BigQueryTableSource {
	return &BigQueryTableSource{client: client, TTL: 5 * time.Minute, NegativeTTL: 30 * time.Second, Now: time.Now,
		entries: map[string]sourceEntry{}, lists: map[string]listEntry{}}
}

// Table implements TableSource. The same *TableMeta is returned until the entry expires.
func (s *BigQueryTableSource) Table(ctx context.Context, project, dataset, table string) (*TableMeta, error) {
	key := project + "\x00" + dataset + "\x00" + table
	now := s.Now()
	s.mu.Lock()
	if e, ok := s.entries[key]; ok && now.Before(e.expires) {
		s.mu.Unlock()
		return e.meta, e.err
	}
	s.mu.Unlock()
	v, err, _ := s.group.Do(key, func() (any, error) {
		meta, err := s.fetch(ctx, project, dataset, table)
		ttl := s.TTL
		switch {
		case err == nil:
		case errors.Is(err, ErrTableNotFound):
			ttl = s.NegativeTTL
		default:
			return nil, err // transient: not cached
		}
		s.mu.Lock()
		if len(s.entries) >= maxSourceEntries {
			for k, e := range s.entries {
				if !now.Before(e.expires) {
					delete(s.entries, k)
				}
			}
			if len(s.entries) >= maxSourceEntries {
				s.entries = map[string]sourceEntry{}
			}
		}
		s.entries[key] = sourceEntry{meta: meta, err: err, expires: s.Now().Add(ttl)}
		s.mu.Unlock()
		return meta, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*TableMeta), nil
}

// FreshTable reads the table's metadata with tables.get now, bypassing the cache, and
// caches the answer. Responses that carry no schema of their own (tabledata.list) are
// masked by column position in it: a cached schema up to TTL old could name other
// columns at those positions after an ALTER TABLE.
func (s *BigQueryTableSource) FreshTable(ctx context.Context, project, dataset, table string) (*TableMeta, error) {
	key := project + "\x00" + dataset + "\x00" + table
	meta, err := s.fetch(ctx, project, dataset, table)
	ttl := s.TTL
	switch {
	case err == nil:
	case errors.Is(err, ErrTableNotFound):
		ttl = s.NegativeTTL
	default:
		return nil, err
	}
	s.mu.Lock()
	if _, ok := s.entries[key]; ok || len(s.entries) < maxSourceEntries {
		s.entries[key] = sourceEntry{meta: meta, err: err, expires: s.Now().Add(ttl)}
	}
	s.mu.Unlock()
	return meta, err
}

func (s *BigQueryTableSource) list(ctx context.Context, project, dataset string) ([]string, error) {
	it := s.client.DatasetInProject(project, dataset).Tables(ctx)
	names := []string{}
	for {
		t, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			var gerr *googleapi.Error
			if errors.As(err, &gerr) && gerr.Code == http.StatusNotFound {
				return nil, fmt.Errorf("dataset %s.%s: %w", project, dataset, ErrTableNotFound)
			}
			return nil, fmt.Errorf("tables.list %s.%s: %w", project, dataset, err)
		}
		names = append(names, t.TableID)
		if len(names) > maxListedTables {
			return nil, fmt.Errorf("dataset %s.%s has more than %d tables: %w", project, dataset, maxListedTables, ErrTooManyTables)
		}
	}
	sort.Strings(names)
	return names, nil
}

// CachedTable implements CachedTableSource: the cached answer of Table, if any.
func (s *BigQueryTableSource) CachedTable(project, dataset, table string) (*TableMeta, error, bool) {
	key := project + "\x00" + dataset + "\x00" + table
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok && s.Now().Before(e.expires) {
		return e.meta, e.err, true
	}
	return nil, nil, false
}

// CachedListTables implements CachedTableSource: the cached answer of ListTables.
func (s *BigQueryTableSource) CachedListTables(project, dataset string) ([]string, error, bool) {
	key := "list\x00" + project + "\x00" + dataset
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.lists[key]; ok && s.Now().Before(e.expires) {
		return e.tables, e.err, true
	}
	return nil, nil, false
}

// Invalidate drops every cached entry.
func (s *BigQueryTableSource) Invalidate() {
	s.mu.Lock()
	s.entries = map[string]sourceEntry{}
	s.lists = map[string]listEntry{}
	s.mu.Unlock()
}

// maxListedTables bounds one dataset listing (wildcard tables): a dataset with more
// tables than this is refused rather than half-listed.
const maxListedTables = 10000

// ListTables implements TableLister with tables.list, cached like tables.get (TTL).
func (s *BigQueryTableSource) ListTables(ctx context.Context, project, dataset string) ([]string, error) {
	key := "list\x00" + project + "\x00" + dataset
	now := s.Now()
	s.mu.Lock()
	if e, ok := s.lists[key]; ok && now.Before(e.expires) {
		s.mu.Unlock()
		return e.tables, e.err
	}
	s.mu.Unlock()
	v, err, _ := s.group.Do(key, func() (any, error) {
		names, err := s.list(ctx, project, dataset)
		ttl := s.TTL
		switch {
		case err == nil:
		case errors.Is(err, ErrTableNotFound), errors.Is(err, ErrTooManyTables):
			ttl = s.NegativeTTL
		default:
			return nil, err // transient: not cached
		}
		s.mu.Lock()
		if len(s.lists) >= 1024 {
			s.lists = map[string]listEntry{}
		}
		s.lists[key] = listEntry{tables: names, err: err, expires: s.Now().Add(ttl)}
		s.mu.Unlock()
		return names, err
	})
	if err != nil {
		return nil, err
	}
	return v.([]string), nil
}

func (s *BigQueryTableSource) fetch(ctx context.Context, project, dataset, table string) (*TableMeta, error) {
	md, err := s.client.DatasetInProject(project, dataset).Table(table).Metadata(ctx)
	if err != nil {
		var gerr *googleapi.Error
		if errors.As(err, &gerr) && gerr.Code == http.StatusNotFound {
			return nil, fmt.Errorf("%s.%s.%s: %w", project, dataset, table, ErrTableNotFound)
		}
		return nil, fmt.Errorf("tables.get %s.%s.%s: %w", project, dataset, table, err)
	}
	m := &TableMeta{
		Project: project, Dataset: dataset, Table: table,
		Type:                   string(md.Type),
		Columns:                columnsFromSchema(md.Schema),
		RequirePartitionFilter: md.RequirePartitionFilter,
	}
	switch {
	case md.ViewQuery != "":
		m.ViewQuery, m.ViewLegacySQL = md.ViewQuery, md.UseLegacySQL
	case md.MaterializedView != nil && md.MaterializedView.Query != "":
		m.ViewQuery = md.MaterializedView.Query
	}
	if tp := md.TimePartitioning; tp != nil {
		m.PartitionField = tp.Field
		m.IngestionTimePartitioned = tp.Field == ""
		m.RequirePartitionFilter = m.RequirePartitionFilter || tp.RequirePartitionFilter
	}
	if rp := md.RangePartitioning; rp != nil {
		m.PartitionField = rp.Field
	}
	if m.Type == "" && m.ViewQuery != "" {
		m.Type = "VIEW"
	}
	return m, nil
}

func columnsFromSchema(s bigquery.Schema) []Column {
	out := make([]Column, 0, len(s))
	for _, f := range s {
		out = append(out, Column{Name: f.Name, Type: string(f.Type), Repeated: f.Repeated, Required: f.Required, Fields: columnsFromSchema(f.Schema)})
	}
	return out
}
