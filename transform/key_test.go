package transform

import (
	"errors"
	"testing"

	"github.com/tilefeed/tilefeed/config"
)

func TestCheckKey(t *testing.T) {
	t.Parallel()
	e, err := Compile([]config.Feature{{Name: "g", Table: "public.t", Entity: []string{"a", "b"}, Project: []string{"v"},
		Columns: map[string]string{"a": "integer", "v": "text"}}})
	if err != nil {
		t.Fatal(err)
	}
	g := e.Group("g")
	for _, tc := range []struct {
		types map[string]string // set from the table, on top of the declared ones
		key   []string
		bad   string // the column named, "" when the key fits
	}{
		{nil, []string{"42", "anything"}, ""},
		{nil, []string{"abc", "x"}, "a"},
		{nil, []string{"4294967296", "x"}, "a"}, // past integer
		{map[string]string{"b": "uuid"}, []string{"1", "0b3c7e1a-9c1d-4f7e-8a59-2f1e3d4c5b6a"}, ""},
		{map[string]string{"b": "uuid"}, []string{"1", "0b3c7e1a"}, "b"},
		{map[string]string{"b": "numeric(12,2)"}, []string{"1", "12.50"}, ""},
		{map[string]string{"b": "numeric(12,2)"}, []string{"1", "12,50"}, "b"},
		{map[string]string{"b": "bigint"}, []string{"1", "-9223372036854775808"}, ""},
		{map[string]string{"b": "timestamp with time zone"}, []string{"1", "whatever"}, ""},
	} {
		if tc.types != nil {
			g.SetKeyTypes(tc.types)
		}
		err := g.CheckKey(tc.key)
		var ke *KeyError
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%v: %v", tc.key, err)
		case tc.bad != "" && (!errors.As(err, &ke) || ke.Column != tc.bad || ke.Group != "g"):
			t.Errorf("%v: got %v, want a KeyError naming %s", tc.key, err, tc.bad)
		}
	}
}
