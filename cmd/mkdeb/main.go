// Command mkdeb builds the dockd Debian packages with the nfpm library: for
// each architecture it cross-compiles dockd (CGO_ENABLED=0; armhf is
// GOARCH=arm GOARM=7) and writes OUT/dockd_VERSION_ARCH.deb holding the
// binary, the hardened systemd unit, the default config as a conffile, the
// README and the udev rule example, with maintainer scripts that create the
// dockd user and groups and enable the unit.
//
//	go run ./cmd/mkdeb -version 1.2.0 -arch amd64,arm64,armhf -out dist
//
// It runs from the repository root (or -root DIR) and needs nothing but the
// Go toolchain: no nfpm binary, no dpkg.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// scripts are the maintainer scripts, shipped inside this program so a
// package is always built with the scripts of the same commit.
//
//go:embed scripts/postinst scripts/prerm scripts/postrm
var scripts embed.FS

// DefaultArches are the Debian architectures built when -arch is not given.
var DefaultArches = []string{"amd64", "arm64", "armhf"}

// Package metadata.
const (
	pkgName        = "dockd"
	pkgMaintainer  = "dockd maintainers <dockd@example.org>"
	pkgDescription = `dock-door station: scanners, stack light, custody events to MQTT
dockd runs on a small Linux box at a warehouse dock door. It reads barcode
scanners and RFID readers on serial ports, decodes GS1 and EPC data, checks
each lot against a local allowlist, shows the decision on a GPIO stack
light, records a custody event durably and publishes it to central over
MQTT with store-and-forward.`
)

// ErrUnknownArch is returned for a Debian architecture mkdeb cannot build.
var ErrUnknownArch = errors.New("unknown architecture")

// goTarget maps a Debian architecture to GOARCH and GOARM.
func goTarget(debArch string) (goarch, goarm string, err error) {
	switch debArch {
	case "amd64", "arm64":
		return debArch, "", nil
	case "armhf":
		return "arm", "7", nil
	}
	return "", "", fmt.Errorf("%w %q: want amd64, arm64 or armhf", ErrUnknownArch, debArch)
}

var (
	debVersionOK = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
	describeRE   = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.]*)-([0-9]+)-g([0-9a-f]+)(-dirty)?$`)
)

// debVersion turns a `git describe` or tag string into a Debian upstream
// version that sorts sensibly and contains no hyphen (which would mean a
// Debian revision): v1.2.0 → 1.2.0; 1.2.0-5-gabc123 → 1.2.0+5.gabc123;
// 1.2.0-5-gabc123-dirty → 1.2.0+5.gabc123.dirty; an untagged abc123-dirty →
// 0~gitabc123.dirty; dev → 0~dev.
func debVersion(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty version")
	}
	var v string
	if m := describeRE.FindStringSubmatch(s); m != nil {
		v = m[1] + "+" + m[2] + ".g" + m[3]
		if m[4] != "" {
			v += ".dirty"
		}
	} else {
		v = strings.TrimPrefix(s, "v")
		v = strings.ReplaceAll(v, "-", ".")
		if v == "" || v[0] < '0' || v[0] > '9' {
			if regexp.MustCompile(`^[0-9a-f]{7,40}`).MatchString(v) {
				v = "git" + v
			}
			v = "0~" + v
		}
	}
	if !debVersionOK.MatchString(v) {
		return "", fmt.Errorf("version %q becomes %q, which is not a valid Debian version", s, v)
	}
	return v, nil
}

// spec is one package to build.
type spec struct {
	Root       string // repository root: systemd/, firmware-config/, README.md
	Version    string // Debian version (debVersion)
	Arch       string // Debian architecture
	Binary     string // the cross-compiled dockd
	ScriptsDir string // postinst, prerm, postrm
	MTime      time.Time
}

// info describes the package for nfpm.
func (s spec) info() *nfpm.Info {
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
	}
	conf := file(filepath.Join(s.Root, "firmware-config", "dockd.yaml"), "/etc/dockd/dockd.yaml", 0o640)
	conf.Type = files.TypeConfig
	stateDir := &files.Content{Destination: "/var/lib/dockd", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o750}}
	confDir := &files.Content{Destination: "/etc/dockd", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o755}}

	info := &nfpm.Info{
		Name:          pkgName,
		Arch:          s.Arch,
		Platform:      "linux",
		Version:       s.Version,
		VersionSchema: "none", // already a Debian version; nfpm must not re-split it
		Section:       "misc",
		Priority:      "optional",
		Maintainer:    pkgMaintainer,
		Description:   pkgDescription,
		Homepage:      "https://github.com/dockd/dockd",
		License:       "proprietary",
		MTime:         s.MTime,
		Overridables: nfpm.Overridables{
			Depends:    []string{"adduser"},
			Recommends: []string{"systemd"},
			Umask:      0o022,
			Contents: files.Contents{
				file(s.Binary, "/usr/bin/dockd", 0o755),
				file(filepath.Join(s.Root, "systemd", "dockd.service"), "/usr/lib/systemd/system/dockd.service", 0o644),
				confDir,
				conf,
				stateDir,
				file(filepath.Join(s.Root, "README.md"), "/usr/share/doc/dockd/README.md", 0o644),
				file(filepath.Join(s.Root, "systemd", "99-dockd-readers.rules"), "/usr/share/doc/dockd/examples/99-dockd-readers.rules", 0o644),
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(s.ScriptsDir, "postinst"),
				PreRemove:   filepath.Join(s.ScriptsDir, "prerm"),
				PostRemove:  filepath.Join(s.ScriptsDir, "postrm"),
			},
			Deb: nfpm.Deb{Compression: "xz"},
		},
	}
	return info
}

// fileName is the package's name in the output directory.
func (s spec) fileName() string { return fmt.Sprintf("%s_%s_%s.deb", pkgName, s.Version, s.Arch) }

// writeDeb packages s into dir atomically (a temp file renamed into place)
// and returns the path.
func writeDeb(s spec, dir string) (string, error) {
	dst := filepath.Join(dir, s.fileName())
	tmp, err := os.CreateTemp(dir, "."+s.fileName()+".*")
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := deb.Default.Package(s.info(), tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("packaging %s: %w", dst, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	return dst, nil
}

// buildBinary cross-compiles ./cmd/dockd for debArch into dir.
func buildBinary(ctx context.Context, root, debArch, version, dir string, stderr io.Writer) (string, error) {
	goarch, goarm, err := goTarget(debArch)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "dockd-"+debArch)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/dockd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if goarm != "" {
		cmd.Env = append(cmd.Env, "GOARM="+goarm)
	}
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = io.MultiWriter(stderr, &log), io.MultiWriter(stderr, &log)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building dockd for %s (GOARCH=%s GOARM=%s): %w\n%s", debArch, goarch, goarm, err, strings.TrimSpace(log.String()))
	}
	return out, nil
}

// writeScripts puts the embedded maintainer scripts into dir for nfpm.
func writeScripts(dir string) error {
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		b, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			return fmt.Errorf("reading embedded %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// options are mkdeb's flags.
type options struct {
	Root, Version, Out string
	Arches             []string
	// Binaries maps a Debian architecture to a prebuilt dockd binary to
	// package instead of compiling one.
	Binaries map[string]string
}

// build builds every requested package and returns their paths.
func build(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) ([]string, error) {
	version, err := debVersion(o.Version)
	if err != nil {
		return nil, err
	}
	for _, a := range o.Arches {
		if _, _, err := goTarget(a); err != nil {
			return nil, err
		}
	}
	for _, need := range []string{"firmware-config/dockd.yaml", "systemd/dockd.service", "systemd/99-dockd-readers.rules", "README.md"} {
		if _, err := os.Stat(filepath.Join(o.Root, need)); err != nil {
			return nil, fmt.Errorf("-root %s does not look like the dockd repository: %w", o.Root, err)
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("creating output directory: %w", err)
	}
	work, err := os.MkdirTemp("", "mkdeb-")
	if err != nil {
		return nil, fmt.Errorf("creating work directory: %w", err)
	}
	defer os.RemoveAll(work)
	if err := writeScripts(work); err != nil {
		return nil, err
	}
	mtime := time.Now().UTC().Truncate(time.Second)
	if t := sourceDateEpoch(); !t.IsZero() {
		mtime = t
	}
	var out []string
	for _, arch := range o.Arches {
		bin := o.Binaries[arch]
		if bin == "" {
			log.Info("building dockd", "arch", arch, "version", o.Version)
			if bin, err = buildBinary(ctx, o.Root, arch, o.Version, work, stderr); err != nil {
				return out, err
			}
		}
		path, err := writeDeb(spec{Root: o.Root, Version: version, Arch: arch, Binary: bin, ScriptsDir: work, MTime: mtime}, o.Out)
		if err != nil {
			return out, err
		}
		log.Info("package written", "path", path, "arch", arch, "version", version)
		out = append(out, path)
	}
	return out, nil
}

// sourceDateEpoch honours SOURCE_DATE_EPOCH for reproducible packages.
func sourceDateEpoch() time.Time {
	var sec int64
	if _, err := fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), &sec); err != nil || sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{Binaries: map[string]string{}}
	fs.StringVar(&o.Root, "root", ".", "dockd repository root")
	fs.StringVar(&o.Version, "version", "dev", "version (a tag or `git describe` output; made a valid Debian version)")
	fs.StringVar(&o.Out, "out", "dist", "output directory")
	arches := fs.String("arch", strings.Join(DefaultArches, ","), "comma-separated Debian architectures (amd64, arm64, armhf)")
	fs.Func("bin", "ARCH=PATH: package this prebuilt dockd binary for ARCH instead of compiling (repeatable)", func(v string) error {
		a, p, ok := strings.Cut(v, "=")
		if !ok || a == "" || p == "" {
			return errors.New("want ARCH=PATH")
		}
		o.Binaries[a] = p
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, a := range strings.Split(*arches, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.Arches = append(o.Arches, a)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	paths, err := build(ctx, o, log, stderr)
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return err
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mkdeb:", err)
		}
		os.Exit(1)
	}
}
