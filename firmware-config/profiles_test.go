package firmwareconfig_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dockd/dockd/device/reader"
	"github.com/dockd/dockd/device/rfid"
	firmwareconfig "github.com/dockd/dockd/firmware-config"
)

func TestProfilesLoadAndAreUsable(t *testing.T) {
	names := firmwareconfig.Profiles()
	for _, want := range []string{"honeywell-xenon", "honeywell-granit", "zebra-ds2208", "zebra-ds3608", "zebra-ds4608",
		"datalogic-gryphon", "datalogic-powerscan", "cognex-dataman-fixed", "newland", "thingmagic-m6e-nano", "generic-ascii-uhf"} {
		if !slices.Contains(names, want) {
			t.Errorf("profile %s missing from %v", want, names)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("Profiles() not sorted: %v", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			p, err := firmwareconfig.Profile(name)
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != name || p.Vendor == "" || p.Family == "" || p.Interface == "" {
				t.Errorf("incomplete identity: %+v", p)
			}
			if len(p.Manuals) == 0 || p.Manuals[0].Title == "" || p.Manuals[0].Document == "" {
				t.Errorf("no manual named: %+v", p.Manuals)
			}
			if len(p.Verify) == 0 {
				t.Errorf("no verify list: every profile has facts to check against the manual")
			}
			switch p.Kind {
			case "barcode":
				if p.AIMIDs == "" || p.FNC1AsGS == "" {
					t.Errorf("barcode profile without aim_ids / fnc1_as_gs")
				}
				cfg := reader.Config{ID: "x", Port: "/dev/ttyACM0", Baud: p.Serial.Baud, DataBits: p.Serial.DataBits,
					Parity: p.Serial.Parity, StopBits: p.Serial.StopBits, Suffix: p.Suffix}
				if err := cfg.Validate(); err != nil {
					t.Errorf("settings do not make a valid reader config: %v", err)
				}
			case "rfid":
				cfg := rfid.Config{ID: "x", Port: "/dev/ttyUSB0", Baud: p.Serial.Baud, Protocol: p.Protocol,
					Region: "EU", Fields: p.Fields, Separator: p.Separator, Suffix: p.Suffix}
				if err := cfg.Validate(); err != nil {
					t.Errorf("settings do not make a valid rfid config: %v", err)
				}
				if p.Serial.DataBits != 8 || strings.ToLower(p.Serial.Parity) != "none" || p.Serial.StopBits != "1" {
					t.Errorf("rfid driver runs 8N1 only, profile says %+v", p.Serial)
				}
			default:
				t.Errorf("kind %q: want barcode or rfid", p.Kind)
			}
		})
	}
}

func TestProfileUnknown(t *testing.T) {
	_, err := firmwareconfig.Profile("acme-9000")
	if !errors.Is(err, firmwareconfig.ErrUnknownProfile) {
		t.Errorf("err = %v, want ErrUnknownProfile", err)
	}
}

func TestProfileReturnsCopies(t *testing.T) {
	a, err := firmwareconfig.Profile("generic-ascii-uhf")
	if err != nil {
		t.Fatal(err)
	}
	a.Fields[0] = "changed"
	b, _ := firmwareconfig.Profile("generic-ascii-uhf")
	if b.Fields[0] != "epc" {
		t.Errorf("caller's change leaked into the shared profile: %v", b.Fields)
	}
}
