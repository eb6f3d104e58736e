package postgres

import "testing"

// TestPlainType: a type's modifier goes, a negative numeric scale
// (PostgreSQL 15's numeric(5,-2)) included, so the checks know the type.
func TestPlainType(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"numeric(30,10)":              "numeric",
		"numeric(5,-2)":               "numeric",
		"numeric(5)":                  "numeric",
		"character varying(20)":       "character varying",
		"timestamp(3) with time zone": "timestamp with time zone",
		"integer":                     "integer",
	} {
		if got := plainType(in); got != want {
			t.Errorf("plainType(%q) = %q, want %q", in, got, want)
		}
	}
}
