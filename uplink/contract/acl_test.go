package contract

import (
	"bytes"
	"os"
	"testing"
)

// The shipped example ACL is exactly what the contract renders: a topic
// added to the contract without regenerating the file fails here.
func TestShippedACLIsRendered(t *testing.T) {
	shipped, err := os.ReadFile("../../firmware-config/mosquitto-acl.example")
	if err != nil {
		t.Fatal(err)
	}
	if want := MosquittoACL(DefaultPrefix, ExampleStations); !bytes.Equal(shipped, want) {
		t.Fatalf("firmware-config/mosquitto-acl.example differs from the contract's rendering; run: go generate ./uplink/contract\n--- rendered:\n%s", want)
	}
}
