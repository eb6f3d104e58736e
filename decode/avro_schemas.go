package decode

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"
)

// SchemaFiles is a SchemaSource held in memory: schemas by id.
type SchemaFiles map[int]avro.Schema

// Schema returns the schema with the given id.
func (f SchemaFiles) Schema(id int) (avro.Schema, error) {
	s, ok := f[id]
	if !ok {
		return nil, fmt.Errorf("no schema with id %d", id)
	}
	return s, nil
}

// LoadSchemaFiles reads the Avro schemas in the top directory of fsys
// whose names give their id: "<id>.avsc" or "<id>-<anything>.avsc", such
// as "7-inventory.customers-value.avsc". Each schema is parsed on its own,
// so two versions of one record name do not clash.
func LoadSchemaFiles(fsys fs.FS) (SchemaFiles, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read Avro schema directory: %w", err)
	}
	out := SchemaFiles{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".avsc" {
			continue
		}
		prefix, _, _ := strings.Cut(strings.TrimSuffix(name, ".avsc"), "-")
		id, err := strconv.Atoi(prefix)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("schema file %s: name Avro schema files <id>.avsc or <id>-<name>.avsc", name)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("schema file %s: a second Avro schema with id %d", name, id)
		}
		text, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read Avro schema file: %w", err)
		}
		s, err := avro.ParseBytesWithCache(text, "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("parse Avro schema file %s: %w", name, err)
		}
		out[id] = s
	}
	return out, nil
}
