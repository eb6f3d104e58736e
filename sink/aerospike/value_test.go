package aerospike

import (
	"reflect"
	"strings"
	"testing"

	as "github.com/aerospike/aerospike-client-go/v7"
)

func TestFromAerospike(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"nil", nil, nil},
		{"int", 42, int64(42)},
		{"negative int", -7, int64(-7)},
		{"int64", int64(1) << 40, int64(1) << 40},
		{"float64", 2.5, 2.5},
		{"float32", float32(0.5), 0.5},
		{"string", "Zoë", "Zoë"},
		{"bytes", []byte{0, 255}, []byte{0, 255}},
		{"bool", true, true},
		{"empty list", []any{}, []any{}},
		{"list", []any{"a", 2, []any{"nested", 3}}, []any{"a", int64(2), []any{"nested", int64(3)}}},
		{"unordered map", map[any]any{1: "x", "k": 2}, map[any]any{int64(1): "x", "k": int64(2)}},
		{"empty map", map[any]any{}, map[any]any{}},
		{
			"ordered map",
			[]as.MapPair{{Key: 1700000040, Value: map[any]any{"n": 3}}, {Key: 1700000100, Value: map[any]any{"n": 1}}},
			map[any]any{int64(1700000040): map[any]any{"n": int64(3)}, int64(1700000100): map[any]any{"n": int64(1)}},
		},
		{"empty ordered map", []as.MapPair{}, map[any]any{}},
		{
			"ordered map in list in map",
			map[any]any{"l": []any{[]as.MapPair{{Key: "a", Value: 1}}}},
			map[any]any{"l": []any{map[any]any{"a": int64(1)}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := fromAerospike(tc.in)
			if err != nil {
				t.Fatalf("fromAerospike(%#v): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("fromAerospike(%#v)\n got %#v\nwant %#v", tc.in, got, tc.want)
			}
			// What the conversion produces is a valid sink value.
			if err := checkValue(got); err != nil {
				t.Errorf("checkValue(%#v): %v", got, err)
			}
		})
	}
}

func TestFromAerospikeRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      any
		wantErr string
	}{
		{"geojson", as.GeoJSONValue(`{"type":"Point"}`), "GeoJSONValue has no sink equivalent"},
		{"hll", as.HLLValue{1}, "HLLValue has no sink equivalent"},
		{"blob map key", map[any]any{[2]byte{1, 2}: 1}, "stored map key"},
		{"float map key", []as.MapPair{{Key: 1.5, Value: 1}}, "stored map key 1.5"},
		{"bad value in list", []any{1, []any{as.HLLValue{}}}, "[1][0]: stored value of type"},
		{"bad value in map", map[any]any{"a": map[any]any{int(3): as.HLLValue{}}}, `["a"][3]: stored value`},
		{"too deep", deepList(maxDepth + 2), "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := fromAerospike(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("fromAerospike(%#v) error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestCheckValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      any
		wantErr string // "" = valid
	}{
		{"nil", nil, ""},
		{"scalars", []any{true, int64(1), 2.5, "s", []byte("b")}, ""},
		{"nested map", map[any]any{int64(1): map[any]any{"n": int64(3), "l": []any{}}}, ""},
		{"max depth", deepList(maxDepth), ""},
		{"int", 1, "value of type int is not a sink bin value"},
		{"int32 in list", []any{int64(1), int32(2)}, "[1]: value of type int32"},
		{"float32", float32(1), "value of type float32"},
		{"int map key", map[any]any{1: "x"}, "map key 1 of type int"},
		{"bad value under key", map[any]any{"a": map[any]any{int64(7): uint(1)}}, `["a"][7]: value of type uint`},
		{"typed map", map[string]any{"a": int64(1)}, "map[string]interface {} is not"},
		{"too deep", deepList(maxDepth + 1), "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkValue(tc.in)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("checkValue(%#v): %v", tc.in, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("checkValue(%#v) error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestBinsFromAerospike(t *testing.T) {
	t.Parallel()
	got, err := binsFromAerospike(as.BinMap{"i": 1, "m": []as.MapPair{{Key: 2, Value: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"i": int64(1), "m": map[any]any{int64(2): "x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
	if _, err := binsFromAerospike(as.BinMap{"g": as.GeoJSONValue("{}")}); err == nil || !strings.Contains(err.Error(), `bin "g"`) {
		t.Errorf("error %v does not name the bin", err)
	}
}

// deepList is a list nested n levels deep (n = 0 is an empty list).
func deepList(n int) any {
	var v any = []any{}
	for range n {
		v = []any{v}
	}
	return v
}
