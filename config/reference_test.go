package config

import (
	"os"
	"strings"
	"testing"
)

// TestReferenceUpToDate keeps docs/config-reference.md generated from the
// code (make reference regenerates it).
func TestReferenceUpToDate(t *testing.T) {
	b, err := os.ReadFile("../docs/config-reference.md")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != strings.TrimSpace(Reference()) {
		t.Error("docs/config-reference.md is stale: run make reference")
	}
}
