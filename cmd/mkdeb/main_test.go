package main

import (
	"bytes"
	"context"
	"debug/elf"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestDebVersion(t *testing.T) {
	tests := []struct{ in, want string }{
		{"v1.2.0", "1.2.0"},
		{"1.2.0", "1.2.0"},
		{"v1.2.0-5-gabc1234", "1.2.0+5.gabc1234"},
		{"1.2.0-5-gabc1234-dirty", "1.2.0+5.gabc1234.dirty"},
		{"bcd0278", "0~gitbcd0278"},
		{"bcd0278-dirty", "0~gitbcd0278.dirty"},
		{"dev", "0~dev"},
		{"1.0~rc1", "1.0~rc1"},
	}
	for _, tt := range tests {
		got, err := debVersion(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("debVersion(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "1.0 beta", "1:2", "ü"} {
		if got, err := debVersion(bad); err == nil {
			t.Errorf("debVersion(%q) = %q, want an error", bad, got)
		}
	}
}

func TestGoTarget(t *testing.T) {
	tests := []struct{ deb, goarch, goarm string }{{"amd64", "amd64", ""}, {"arm64", "arm64", ""}, {"armhf", "arm", "7"}}
	for _, tt := range tests {
		a, m, err := goTarget(tt.deb)
		if err != nil || a != tt.goarch || m != tt.goarm {
			t.Errorf("goTarget(%s) = %s %s %v", tt.deb, a, m, err)
		}
	}
	if _, _, err := goTarget("i386"); err == nil {
		t.Error("goTarget(i386): no error")
	}
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package dpkg): %v", tool, err)
		}
	}
}

func sh(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// amd64Package builds the amd64 package once for all tests (cross-compiling
// dockd for real) and returns its path.
var amd64Package = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "mkdeb-test-")
	if err != nil {
		return "", err
	}
	root, _ := filepath.Abs("../..")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var stderr bytes.Buffer
	paths, err := build(context.Background(), options{Root: root, Version: "v1.2.3-4-gabcdef0", Out: dir, Arches: []string{"amd64"}}, log, &stderr)
	if err != nil {
		return "", err
	}
	return paths[0], nil
})

func pkg(t *testing.T) string {
	t.Helper()
	p, err := amd64Package()
	if err != nil {
		t.Fatalf("building the amd64 package: %v", err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if p, err := amd64Package(); err == nil {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

func TestPackageControl(t *testing.T) {
	need(t, "dpkg-deb")
	p := pkg(t)
	if base := filepath.Base(p); base != "dockd_1.2.3+4.gabcdef0_amd64.deb" {
		t.Errorf("file name %s", base)
	}
	want := map[string]string{
		"Package":      "dockd",
		"Version":      "1.2.3+4.gabcdef0",
		"Architecture": "amd64",
		"Maintainer":   pkgMaintainer,
		"Depends":      "adduser",
	}
	for field, v := range want {
		if got := strings.TrimSpace(sh(t, nil, "dpkg-deb", "-f", p, field)); got != v {
			t.Errorf("%s: %q, want %q", field, got, v)
		}
	}
	desc := sh(t, nil, "dpkg-deb", "-f", p, "Description")
	if !strings.HasPrefix(desc, "dock-door station:") || strings.Count(desc, "\n") < 3 {
		t.Errorf("Description: %q", desc)
	}

	ctrl := t.TempDir()
	tarball := sh(t, nil, "dpkg-deb", "--ctrl-tarfile", p)
	cmd := exec.Command("tar", "-x", "-C", ctrl)
	cmd.Stdin = strings.NewReader(tarball)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extracting control: %v\n%s", err, out)
	}
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	if string(conffiles) != "/etc/dockd/dockd.yaml\n" {
		t.Errorf("conffiles = %q", conffiles)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		path := filepath.Join(ctrl, s)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("maintainer script %s missing: %v", s, err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v", s, fi.Mode())
		}
		sh(t, nil, "sh", "-n", path)
		if _, err := exec.LookPath("dash"); err == nil {
			sh(t, nil, "dash", "-n", path) // Debian's /bin/sh
		}
	}
}

func TestPackageContents(t *testing.T) {
	need(t, "dpkg-deb")
	p := pkg(t)
	listing := sh(t, nil, "dpkg-deb", "-c", p)
	root := t.TempDir()
	sh(t, nil, "dpkg-deb", "-x", p, root)

	files := []struct {
		path string
		mode os.FileMode
		dir  bool
	}{
		{"usr/bin/dockd", 0o755, false},
		{"usr/lib/systemd/system/dockd.service", 0o644, false},
		{"etc/dockd/dockd.yaml", 0o640, false},
		{"var/lib/dockd", 0o750, true},
		{"usr/share/doc/dockd/README.md", 0o644, false},
		{"usr/share/doc/dockd/examples/99-dockd-readers.rules", 0o644, false},
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if fi.IsDir() != f.dir || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v (dir %v)", f.path, fi.Mode(), f.mode, f.dir)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		if !strings.Contains(line, " root/root ") {
			t.Errorf("not owned by root/root in the package: %s", line)
		}
	}

	// The shipped files are the repository's, byte for byte.
	repo := repoRoot(t)
	for pkgPath, src := range map[string]string{
		"usr/lib/systemd/system/dockd.service": "systemd/dockd.service",
		"etc/dockd/dockd.yaml":                 "firmware-config/dockd.yaml",
	} {
		a, _ := os.ReadFile(filepath.Join(root, pkgPath))
		b, _ := os.ReadFile(filepath.Join(repo, src))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s", pkgPath, src)
		}
	}

	// The binary is a static amd64 build of this version, and the shipped
	// config is valid with state in /var/lib/dockd.
	bin := filepath.Join(root, "usr/bin/dockd")
	if out := sh(t, nil, bin, "version"); strings.TrimSpace(out) != "dockd v1.2.3-4-gabcdef0" {
		t.Errorf("dockd version: %q", out)
	}
	conf := filepath.Join(root, "etc/dockd/dockd.yaml")
	sh(t, nil, bin, "check-config", conf)
	b, _ := os.ReadFile(conf)
	if !regexp.MustCompile(`(?m)^state_dir: /var/lib/dockd\b`).Match(b) {
		t.Error("shipped config does not keep state in /var/lib/dockd")
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	if ef.Machine != elf.EM_X86_64 {
		t.Errorf("binary machine %v, want x86-64", ef.Machine)
	}
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Error("binary is dynamically linked (has an ELF interpreter): CGO_ENABLED=0 not in effect")
		}
	}
}

// fakeTools are stand-ins for the account and service tools the
// maintainer scripts call, so dpkg can run them against a scratch root
// without touching this machine's users or services. They keep their
// passwd and group files in $FAKE_DB and log every call to $FAKE_DB/log.
var fakeTools = map[string]string{
	"getent": `db=$FAKE_DB/$1; grep -q "^$2:" "$db" && grep "^$2:" "$db"`,
	"addgroup": `echo "addgroup $*" >> $FAKE_DB/log
for a; do name=$a; done
grep -q "^$name:" $FAKE_DB/group && { echo "group $name exists" >&2; exit 1; }
echo "$name:x:$((900 + $(wc -l < $FAKE_DB/group))):" >> $FAKE_DB/group`,
	"adduser": `echo "adduser $*" >> $FAKE_DB/log
case " $* " in
*" --system "*)
	for a; do name=$a; done
	grep -q "^$name:" $FAKE_DB/passwd && exit 0
	echo "$name:x:999:999::/var/lib/dockd:/usr/sbin/nologin" >> $FAKE_DB/passwd ;;
*)
	set -- $(echo "$*" | sed 's/--quiet//')
	grep -q "^$2:" $FAKE_DB/group || { echo "no group $2" >&2; exit 1; }
	sed -i "s/^\($2:[^:]*:[^:]*:\)\(.*\)$/\1\2,$1/; s/:,/:/" $FAKE_DB/group ;;
esac`,
	"id": `[ "$1" = -nG ] || exit 2
grep -q "^$2:" $FAKE_DB/passwd || { echo "id: $2: no such user" >&2; exit 1; }
echo dockd $(grep -E "[:,]$2(,|$)" $FAKE_DB/group | cut -d: -f1)`,
	"chown":             `echo "chown $*" >> $FAKE_DB/log`,
	"systemctl":         `echo "systemctl $*" >> $FAKE_DB/log`,
	"dpkg-statoverride": `exit 1`,
}

// TestMaintainerScripts installs the package with dpkg into a scratch root
// (dpkg --root with chrootless scripts, which then see $DPKG_ROOT), with
// fake account and service tools, and checks what the scripts did across
// install, reinstall (upgrade path), remove and purge.
func TestMaintainerScripts(t *testing.T) {
	need(t, "dpkg", "dpkg-deb", "dpkg-query")
	p := pkg(t)
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "run/systemd/system"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
	db := t.TempDir()
	os.WriteFile(filepath.Join(db, "group"), []byte("root:x:0:\ndialout:x:20:\n"), 0o644)
	os.WriteFile(filepath.Join(db, "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	bin := t.TempDir()
	for name, body := range fakeTools {
		os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755)
	}
	env := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE_DB=" + db}
	dpkg := func(args ...string) string {
		return sh(t, env, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--force-unsafe-io"}, args...)...)
	}
	takeLog := func() string {
		b, _ := os.ReadFile(filepath.Join(db, "log"))
		os.Remove(filepath.Join(db, "log"))
		return string(b)
	}
	read := func(name string) string { b, _ := os.ReadFile(filepath.Join(db, name)); return string(b) }

	// Fresh install.
	dpkg("-i", p)
	log := takeLog()
	for _, want := range []string{
		"addgroup --quiet --system gpio",
		"addgroup --quiet --system dockd",
		"adduser --quiet --system --ingroup dockd --home /var/lib/dockd",
		"adduser --quiet dockd dialout",
		"adduser --quiet dockd gpio",
		"chown dockd:dockd " + root + "/var/lib/dockd",
		"chown root:dockd " + root + "/etc/dockd/dockd.yaml",
		"systemctl --quiet enable dockd.service",
		"systemctl --system daemon-reload",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("install: no %q in\n%s", want, log)
		}
	}
	if !strings.Contains(read("group"), "dialout:x:20:dockd") || !regexp.MustCompile(`(?m)^gpio:x:\d+:dockd$`).MatchString(read("group")) {
		t.Errorf("groups after install:\n%s", read("group"))
	}
	fi, err := os.Stat(filepath.Join(root, "etc/dockd/dockd.yaml"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("config after install: %v %v", fi, err)
	}
	if out := sh(t, nil, "dpkg-query", "--root="+root, "-W", "-f=${Conffiles}", "dockd"); !strings.Contains(out, "/etc/dockd/dockd.yaml") {
		t.Errorf("dpkg did not register the conffile: %q", out)
	}

	// Reinstalling runs the upgrade path (prerm upgrade, postinst configure
	// OLD): idempotent — no accounts created again, the administrator's
	// enable/disable choice kept, the running service restarted.
	groups, users := read("group"), read("passwd")
	dpkg("-i", p)
	log = takeLog()
	if strings.Contains(log, "addgroup") || strings.Contains(log, "adduser --quiet --system") || strings.Contains(log, "adduser --quiet dockd") {
		t.Errorf("reinstall created accounts again:\n%s", log)
	}
	if strings.Contains(log, "enable") || !strings.Contains(log, "systemctl try-restart dockd.service") {
		t.Errorf("reinstall: want try-restart and no enable:\n%s", log)
	}
	if read("group") != groups || read("passwd") != users {
		t.Errorf("reinstall changed accounts:\n%s\n%s", read("group"), read("passwd"))
	}

	// Running postinst by hand twice more changes nothing either.
	postinst := filepath.Join(root, "var/lib/dpkg/info/dockd.postinst")
	for range 2 {
		sh(t, append(env, "DPKG_ROOT="+root), postinst, "configure", "1.2.3+4.gabcdef0")
	}
	if read("group") != groups || read("passwd") != users {
		t.Error("postinst run twice changed accounts")
	}
	takeLog()

	// State written by the station survives remove and goes on purge.
	os.WriteFile(filepath.Join(root, "var/lib/dockd/buffer.db"), []byte("events"), 0o600)
	dpkg("-r", "dockd")
	log = takeLog()
	for _, want := range []string{"systemctl stop dockd.service", "systemctl --quiet disable dockd.service"} {
		if !strings.Contains(log, want) {
			t.Errorf("remove: no %q in\n%s", want, log)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/dockd/buffer.db")); err != nil {
		t.Errorf("remove deleted the state: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/dockd/dockd.yaml")); err != nil {
		t.Errorf("remove deleted the conffile: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/dockd")); err == nil {
		t.Error("remove left the binary")
	}
	dpkg("--purge", "dockd")
	for _, gone := range []string{"var/lib/dockd", "etc/dockd"} {
		if _, err := os.Stat(filepath.Join(root, gone)); err == nil {
			t.Errorf("purge left %s", gone)
		}
	}
	if !strings.Contains(read("passwd"), "dockd:") {
		t.Error("purge removed the user (policy: keep it)")
	}
}

// TestUnitHardening checks the unit's systemd exposure score stays at or
// below 2.0 (systemd-analyze's threshold is on its 0–100 scale).
func TestUnitHardening(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	unit := filepath.Join(repoRoot(t), "systemd", "dockd.service")
	cmd := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", unit)
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for dockd.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in output (err %v):\n%s", err, out)
	}
	t.Logf("exposure %s", m[1])
	if err != nil {
		t.Fatalf("exposure %s is above 2.0: %v", m[1], err)
	}
	b, _ := os.ReadFile(unit)
	for _, want := range []string{"Type=notify", "WatchdogSec=", "DevicePolicy=closed", "CapabilityBoundingSet=\n", "ProtectSystem=strict", "SystemCallFilter=@system-service"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("unit lacks %q", want)
		}
	}
}
