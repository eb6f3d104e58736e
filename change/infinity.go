package change

// Infinity is PostgreSQL's 'infinity' (+1) or '-infinity' (-1) in a date
// or timestamp column: a row value (see Row) that sorts after (before)
// every time, so min, max, first and last treat it as PostgreSQL does. It
// renders as PostgreSQL writes it.
type Infinity int8

const (
	PosInfinity Infinity = 1
	NegInfinity Infinity = -1
)

func (i Infinity) String() string {
	if i < 0 {
		return "-infinity"
	}
	return "infinity"
}

// ParseInfinity reads "infinity" or "-infinity".
func ParseInfinity(s string) (Infinity, bool) {
	switch s {
	case "infinity":
		return PosInfinity, true
	case "-infinity":
		return NegInfinity, true
	}
	return 0, false
}
