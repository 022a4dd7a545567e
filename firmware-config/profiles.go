package firmwareconfig

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

//go:embed profiles/*.yaml
var profileFS embed.FS

// ErrUnknownProfile is returned (wrapped) by Profile for a name with no file.
var ErrUnknownProfile = errors.New("unknown reader profile")

// ReaderProfile is one scanner or RFID reader family's recommended setup,
// from firmware-config/profiles/NAME.yaml. Facts listed in Verify (or
// marked "verify against the manual" in the text) are unconfirmed.
type ReaderProfile struct {
	Name      string          `yaml:"name"`
	Vendor    string          `yaml:"vendor"`
	Family    string          `yaml:"family"`
	Kind      string          `yaml:"kind"`     // barcode | rfid
	Protocol  string          `yaml:"protocol"` // rfid only: mercury | ascii
	Interface string          `yaml:"interface"`
	Serial    ProfileSerial   `yaml:"serial"`
	Suffix    string          `yaml:"suffix"` // CR | LF | CRLF
	Fields    []string        `yaml:"fields"` // ascii rfid column layout
	Separator string          `yaml:"separator"`
	AIMIDs    string          `yaml:"aim_ids"`
	FNC1AsGS  string          `yaml:"fnc1_as_gs"`
	Region    string          `yaml:"region"`
	ReadPower string          `yaml:"read_power"`
	Manuals   []ProfileManual `yaml:"manuals"`
	Verify    []string        `yaml:"verify"`
	Notes     []string        `yaml:"notes"`
}

// ProfileSerial is the line setting a profile recommends.
type ProfileSerial struct {
	Baud     int    `yaml:"baud"`
	DataBits int    `yaml:"data_bits"`
	Parity   string `yaml:"parity"`
	StopBits string `yaml:"stop_bits"`
}

// ProfileManual names a vendor document.
type ProfileManual struct {
	Title    string `yaml:"title"`
	Document string `yaml:"document"`
}

var loadProfiles = sync.OnceValues(func() (map[string]ReaderProfile, error) {
	files, err := fs.Glob(profileFS, "profiles/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("listing embedded profiles: %w", err)
	}
	out := make(map[string]ReaderProfile, len(files))
	for _, f := range files {
		b, err := profileFS.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading embedded %s: %w", f, err)
		}
		var p ReaderProfile
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		if want := strings.TrimSuffix(path.Base(f), ".yaml"); p.Name != want {
			return nil, fmt.Errorf("%s: name %q does not match the file name", f, p.Name)
		}
		out[p.Name] = p
	}
	return out, nil
})

// Profile returns the named profile. It is safe for concurrent use; the
// embedded files are parsed once. The returned value's slices are copies.
func Profile(name string) (ReaderProfile, error) {
	all, err := loadProfiles()
	if err != nil {
		return ReaderProfile{}, err
	}
	p, ok := all[name]
	if !ok {
		return ReaderProfile{}, fmt.Errorf("reader profile %q: %w (have %s)", name, ErrUnknownProfile, strings.Join(Profiles(), ", "))
	}
	p.Fields, p.Manuals = slices.Clone(p.Fields), slices.Clone(p.Manuals)
	p.Verify, p.Notes = slices.Clone(p.Verify), slices.Clone(p.Notes)
	return p, nil
}

// Profiles returns the names of the embedded profiles, sorted. It is safe
// for concurrent use.
func Profiles() []string {
	files, _ := fs.Glob(profileFS, "profiles/*.yaml") // the pattern is valid
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, strings.TrimSuffix(path.Base(f), ".yaml"))
	}
	slices.Sort(names)
	return names
}
