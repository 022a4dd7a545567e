package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const testPageSize = 4096

// fillQueue writes n records with 200-byte payloads marked "MARK-<seq>-".
func fillQueue(t *testing.T, path string, n int) {
	t.Helper()
	q, err := Open(path, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// Concurrent appenders so the records share group commits.
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				_, err := q.Append(context.Background(), func(s uint64) ([]byte, error) {
					p := []byte(fmt.Sprintf("MARK-%d-", s))
					return append(p, bytes.Repeat([]byte{'.'}, 200-len(p))...), nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

func garbage(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func overwrite(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// rawBolt writes a bbolt file directly, to build well-formed files that are
// not well-formed queues.
func rawBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptFileMovedAside(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{"garbage over the page holding record 150", func(t *testing.T, path string) {
			fillQueue(t, path, 300)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			off := bytes.Index(data, []byte("MARK-150-"))
			if off < 0 {
				t.Fatal("marker not found in file")
			}
			page := int64(off / testPageSize)
			overwrite(t, path, page*testPageSize, garbage(1, testPageSize))
		}},
		{"garbage over every data page", func(t *testing.T, path string) {
			fillQueue(t, path, 300)
			fi, _ := os.Stat(path)
			overwrite(t, path, 2*testPageSize, garbage(2, int(fi.Size())-2*testPageSize))
		}},
		{"garbage over both meta pages", func(t *testing.T, path string) {
			fillQueue(t, path, 20)
			overwrite(t, path, 0, garbage(3, 2*testPageSize))
		}},
		{"truncated to half", func(t *testing.T, path string) {
			fillQueue(t, path, 300)
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated to 100 bytes", func(t *testing.T, path string) {
			fillQueue(t, path, 20)
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}},
		{"not a bbolt file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("hello dock door\n"), 1000), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"bbolt file of something else", func(t *testing.T, path string) {
			rawBolt(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("allowlist"))
				if err != nil {
					return err
				}
				return b.Put([]byte("k"), []byte("v"))
			})
		}},
		{"record with a bad header", func(t *testing.T, path string) {
			rawBolt(t, path, func(tx *bolt.Tx) error {
				m, _ := tx.CreateBucket(bucketMeta)
				r, _ := tx.CreateBucket(segName(1))
				if err := m.Put(keyNextSeq, u64(2)); err != nil {
					return err
				}
				return r.Put(seqKey(1), []byte{9, 1, 2})
			})
		}},
		{"segment holding a record older than its name", func(t *testing.T, path string) {
			fillQueue(t, path, 3)
			rawBolt(t, path, func(tx *bolt.Tx) error {
				if err := tx.DeleteBucket(segName(1)); err != nil {
					return err
				}
				s, _ := tx.CreateBucket(segName(2))
				return s.Put(seqKey(1), encodeValue(time.Now(), []byte("x")))
			})
		}},
		{"segments that overlap", func(t *testing.T, path string) {
			fillQueue(t, path, 3)
			rawBolt(t, path, func(tx *bolt.Tx) error {
				// Record 3 moves to a segment named 2: the first segment
				// (named 1, holding 1..3) now runs past it.
				if err := tx.Bucket(segName(1)).Delete(seqKey(2)); err != nil {
					return err
				}
				s, _ := tx.CreateBucket(segName(2))
				if err := tx.Bucket(bucketMeta).Put(keyNextSeq, u64(5)); err != nil {
					return err
				}
				return s.Put(seqKey(4), encodeValue(time.Now(), []byte("x")))
			})
		}},
		{"next seq not above newest record", func(t *testing.T, path string) {
			fillQueue(t, path, 5)
			rawBolt(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(keyNextSeq, u64(3))
			})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.db")
			c.setup(t, path)
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			q, err := Open(path, Options{Logger: quietLogger()})
			var ce *CorruptError
			if !errors.As(err, &ce) {
				if q != nil {
					q.Close()
				}
				t.Fatalf("Open = %v, want *CorruptError", err)
			}
			t.Logf("Open: %v", err)
			if ce.Path != path || ce.MovedTo == "" || ce.Err == nil {
				t.Fatalf("CorruptError = %+v", ce)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("corrupt file still at %s (stat err %v)", path, err)
			}
			moved, err := os.ReadFile(ce.MovedTo)
			if err != nil {
				t.Fatalf("reading moved file: %v", err)
			}
			if !bytes.Equal(moved, orig) {
				t.Fatal("moved-aside file differs from the corrupt original")
			}

			q = openT(t, path, Options{})
			if st := q.Stats(); st.Depth != 0 || st.NewestSeq != 0 {
				t.Fatalf("fresh queue not empty: %+v", st)
			}
			if seq := appendT(t, q, payloadFor); seq != 1 {
				t.Fatalf("fresh queue first seq = %d", seq)
			}
		})
	}
}

func TestValidFileNotMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	fillQueue(t, path, 300)
	q := openT(t, path, Options{})
	if err := q.Ack(100); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path, Options{})
	if st := q.Stats(); st.Depth != 200 || st.OldestSeq != 101 || st.Bytes != 200*200 {
		t.Fatalf("stats after reopen = %+v", st)
	}
	entries, _ := filepath.Glob(path + ".corrupt-*")
	if len(entries) != 0 {
		t.Fatalf("valid file produced %v", entries)
	}
	if _, err := q.Append(context.Background(), func(s uint64) ([]byte, error) { return payloadFor(s), nil }); err != nil {
		t.Fatal(err)
	}
}
