// Command genacl writes the example Mosquitto ACL rendered from the
// contract (contract.MosquittoACL with contract.ExampleStations); go
// generate in uplink/contract runs it.
package main

import (
	"flag"
	"log"
	"os"

	"github.com/dockd/dockd/uplink/contract"
)

func main() {
	out := flag.String("o", "mosquitto-acl.example", "file to write")
	flag.Parse()
	if err := os.WriteFile(*out, contract.MosquittoACL(contract.DefaultPrefix, contract.ExampleStations), 0o644); err != nil {
		log.Fatal(err)
	}
}
