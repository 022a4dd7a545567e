package buffer

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestCheckHealthy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q, err := Open(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return bytes.Repeat([]byte("x"), 100), nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Ack(3); err != nil {
		t.Fatal(err)
	}
	live := q.Stats()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	got, err := Check(path, Options{MaxBytes: 1000, AlarmFraction: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if got.Depth != 7 || got.Bytes != 700 || got.OldestSeq != 4 || got.NewestSeq != 10 || got.LastAckSeq != 3 {
		t.Errorf("Check = %+v", got)
	}
	if !got.OldestAt.Equal(live.OldestAt) || !got.LastAckAt.Equal(live.LastAckAt) {
		t.Errorf("times: check %v/%v, live %v/%v", got.OldestAt, got.LastAckAt, live.OldestAt, live.LastAckAt)
	}
	if got.Fill != 0.7 || !got.Alarm || got.Full {
		t.Errorf("fill %v alarm %v full %v against MaxBytes 1000", got.Fill, got.Alarm, got.Full)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("Check changed the file")
	}
}

func TestCheckLockedByRunningStation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q, err := Open(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return []byte("e"), nil }); err != nil {
		t.Fatal(err)
	}
	_, err = Check(path, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Check on an open queue: %v, want ErrLocked", err)
	}
	// The station is unaffected.
	if _, err := q.Append(context.Background(), func(uint64) ([]byte, error) { return []byte("f"), nil }); err != nil {
		t.Fatalf("append after Check: %v", err)
	}
}

func TestCheckProblems(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		make func(path string)
		want error
	}{
		{"missing", func(string) {}, fs.ErrNotExist},
		{"garbage", func(p string) { os.WriteFile(p, garbage(7, 4*testPageSize), 0o600) }, ErrCorrupt},
		{"truncated", func(p string) {
			fillQueue(t, p, 300)
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, ErrCorrupt},
		{"not a queue", func(p string) {
			rawBolt(t, p, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
		}, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".db")
			tt.make(path)
			before, _ := os.ReadFile(path)
			_, err := Check(path, Options{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check: %v, want %v", err, tt.want)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Error("Check changed or moved the file")
			}
		})
	}
}

func TestCheckEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	os.WriteFile(path, nil, 0o600)
	st, err := Check(path, Options{MaxAge: time.Hour})
	if err != nil || st.Depth != 0 {
		t.Fatalf("empty file: %+v %v", st, err)
	}
}
