// Package spill sorts more records than memory should hold: records are
// buffered up to a byte budget, each full buffer is sorted and written to
// a run file, and the runs are merged back in order, one record at a time.
// An export uses it to hold its spine and its results on disk, so its
// memory does not grow with the spine's length.
package spill

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// Codec says how records of type T are ordered, sized and written.
type Codec[T any] struct {
	Compare func(a, b T) int
	Size    func(T) int // bytes of memory the record holds, roughly
	Append  func([]byte, T) []byte
	// Decode reads one record that Append wrote; it must copy what it
	// keeps of b.
	Decode func(b []byte) (T, error)
}

// Sorter buffers records and spills sorted runs to files in Dir.
type Sorter[T any] struct {
	codec  Codec[T]
	dir    string
	budget int
	buf    []T
	bytes  int
	runs   []*os.File
	enc    []byte
	count  int64
	merged bool
}

// New returns a sorter that spills to temporary files in dir once its
// buffered records hold budget bytes.
func New[T any](dir string, budget int, c Codec[T]) *Sorter[T] {
	return &Sorter[T]{codec: c, dir: dir, budget: budget}
}

// Len is the number of records added.
func (s *Sorter[T]) Len() int64 { return s.count }

// Runs is the number of run files written so far.
func (s *Sorter[T]) Runs() int { return len(s.runs) }

// Add adds a record; it may write a run.
func (s *Sorter[T]) Add(v T) error {
	if s.merged {
		return errors.New("spill: Add after Merge")
	}
	s.buf = append(s.buf, v)
	s.bytes += s.codec.Size(v) + 16
	s.count++
	if s.bytes >= s.budget {
		return s.spill()
	}
	return nil
}

// spill sorts the buffer and writes it as a run: per record, its length
// as a uvarint and the record's bytes.
func (s *Sorter[T]) spill() error {
	slices.SortStableFunc(s.buf, s.codec.Compare)
	f, err := os.CreateTemp(s.dir, "run-*")
	if err != nil {
		return fmt.Errorf("spill to disk: %w", err)
	}
	// Unlinked at once: the open file is all that holds it, so nothing is
	// left behind whatever happens to the process.
	os.Remove(f.Name())
	s.runs = append(s.runs, f)
	w := bufio.NewWriterSize(f, 256<<10)
	var lenBuf [10]byte
	for _, v := range s.buf {
		s.enc = s.codec.Append(s.enc[:0], v)
		n := binary.PutUvarint(lenBuf[:], uint64(len(s.enc)))
		if _, err := w.Write(lenBuf[:n]); err != nil {
			return fmt.Errorf("spill to disk: %w", err)
		}
		if _, err := w.Write(s.enc); err != nil {
			return fmt.Errorf("spill to disk: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("spill to disk: %w", err)
	}
	clear(s.buf)
	s.buf, s.bytes = s.buf[:0], 0
	return nil
}

// Close releases the run files.
func (s *Sorter[T]) Close() error {
	var errs []error
	for _, f := range s.runs {
		errs = append(errs, f.Close())
	}
	s.runs, s.buf = nil, nil
	return errors.Join(errs...)
}

// Merge ends adding and returns an iterator over every record in order.
// Records that compare equal come back in the order they were added.
func (s *Sorter[T]) Merge() (*Iter[T], error) {
	s.merged = true
	if len(s.runs) == 0 {
		// Everything fit in memory.
		slices.SortStableFunc(s.buf, s.codec.Compare)
		return &Iter[T]{mem: s.buf}, nil
	}
	if len(s.buf) > 0 {
		if err := s.spill(); err != nil {
			return nil, err
		}
	}
	s.buf = nil
	it := &Iter[T]{codec: s.codec}
	for i, f := range s.runs {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		r := &run[T]{r: bufio.NewReaderSize(f, 64<<10), order: i}
		ok, err := r.next(s.codec)
		if err != nil {
			return nil, err
		}
		if ok {
			it.h.runs = append(it.h.runs, r)
		}
	}
	it.h.cmp = s.codec.Compare
	heap.Init(&it.h)
	return it, nil
}

// Iter returns the merged records one at a time.
type Iter[T any] struct {
	mem   []T
	codec Codec[T]
	h     runHeap[T]
}

// Next returns the next record; ok is false at the end.
func (it *Iter[T]) Next() (v T, ok bool, err error) {
	if it.h.runs == nil {
		if len(it.mem) == 0 {
			return v, false, nil
		}
		v, it.mem = it.mem[0], it.mem[1:]
		return v, true, nil
	}
	if len(it.h.runs) == 0 {
		return v, false, nil
	}
	r := it.h.runs[0]
	v = r.cur
	more, err := r.next(it.codec)
	if err != nil {
		return v, false, err
	}
	if more {
		heap.Fix(&it.h, 0)
	} else {
		heap.Pop(&it.h)
	}
	return v, true, nil
}

type run[T any] struct {
	r     *bufio.Reader
	cur   T
	buf   []byte
	order int // earlier runs first among equal records
}

func (r *run[T]) next(c Codec[T]) (bool, error) {
	n, err := binary.ReadUvarint(r.r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read spilled run: %w", err)
	}
	if uint64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		return false, fmt.Errorf("read spilled run: %w", err)
	}
	// Decode must copy what it keeps: the buffer is reused.
	if r.cur, err = c.Decode(r.buf); err != nil {
		return false, fmt.Errorf("read spilled run: %w", err)
	}
	return true, nil
}

type runHeap[T any] struct {
	runs []*run[T]
	cmp  func(a, b T) int
}

func (h *runHeap[T]) Len() int { return len(h.runs) }
func (h *runHeap[T]) Less(i, j int) bool {
	if c := h.cmp(h.runs[i].cur, h.runs[j].cur); c != 0 {
		return c < 0
	}
	return h.runs[i].order < h.runs[j].order
}
func (h *runHeap[T]) Swap(i, j int) { h.runs[i], h.runs[j] = h.runs[j], h.runs[i] }
func (h *runHeap[T]) Push(x any)    { h.runs = append(h.runs, x.(*run[T])) }
func (h *runHeap[T]) Pop() any {
	r := h.runs[len(h.runs)-1]
	h.runs = h.runs[:len(h.runs)-1]
	return r
}
