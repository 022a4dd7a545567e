package contract

//go:generate go run ./genacl -o ../../firmware-config/mosquitto-acl.example

import (
	"fmt"
	"strings"
)

// Topic levels the broker ACL grants beside those above. They are spelled
// here too (not only by the packages that use them) so the ACL renders
// every topic of the contract.
const (
	aclLevelReceipts     = "receipts"      // central → station: what central has stored
	aclLevelReceiptProbe = "receipt-probe" // station (dockd doctor) → central
	aclLevelAck          = "ack"           // PREFIX/SITE/DOOR/allowlist/ack
)

// ACLStation is one station the broker knows: its site and door.
type ACLStation struct{ Site, Door string }

// Username is the station's MQTT username, which is also the CN of its
// client certificate (the broker sets use_identity_as_username): SITE/DOOR.
// It is a topic fragment on purpose: the ACL's pattern rules put it where
// PREFIX/SITE/DOOR/… has SITE/DOOR, so one set of rules covers every
// station and a station can only ever reach its own door's topics.
func (s ACLStation) Username() string { return s.Site + "/" + s.Door }

// ExampleStations are the stations of the shipped example ACL (and of the
// test that runs the contract through it): two doors at one site, one at
// another.
var ExampleStations = []ACLStation{{"dc-east", "door-07"}, {"dc-east", "door-08"}, {"dc-west", "door-01"}}

// Central and monitor usernames of the example ACL.
const (
	ACLCentralUser = "central"
	ACLMonitorUser = "monitor"
)

// MosquittoACL renders a Mosquitto acl_file granting exactly the contract
// for topic prefix (DefaultPrefix when empty): pattern rules keyed on the
// station username SITE/DOOR (%u) for every door-level topic, one block
// per station for its site's allowlist (a site-level topic %u cannot
// name), central's grants, and a read-only monitor. Everything not granted
// is denied. The output is deterministic (the shipped example is compared
// with it byte for byte).
func MosquittoACL(prefix string, stations []ACLStation) []byte {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	p := prefix
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Mosquitto ACL for dockd — /etc/mosquitto/dockd.acl (acl_file in mosquitto.conf).")
	w("# GENERATED from uplink/contract (go generate ./uplink/contract); do not edit by hand:")
	w("# TestShippedACLIsRendered compares this file with the contract byte for byte, and")
	w("# TestACLContractOnMosquitto runs the whole contract through it on a real broker.")
	w("#")
	w("# Identity: a station's MQTT username is SITE/DOOR (e.g. dc-east/door-07): the CN")
	w("# of its client certificate (the listener sets use_identity_as_username and")
	w("# use_username_as_clientid). The pattern rules below substitute it for %%u, so a")
	w("# station reaches only %s/SITE/DOOR/… of its own door. The site's allowlist", p)
	w("# (%s/SITE/%s/#) is one level up, which %%u cannot name: each station", p, LevelAllowlist)
	w("# has a one-line block for it (generate the blocks from your station inventory).")
	w("#")
	w("# Measured with mosquitto 2.0.11, MQTT 3.1.1, on the TLS listeners of")
	w("# mosquitto-dockd.conf.example (TestACLContractOnMosquitto): a publish the ACL")
	w("# denies is acknowledged (PUBACK, reason 135 the 3.1.1 client cannot see), not")
	w("# delivered, logged as \"Denied PUBLISH from …\" — and then the broker drops the")
	w("# connection. A wrong grant therefore shows as a station that reconnects after")
	w("# each publish of that kind. A subscription to a filter no rule grants is still")
	w("# granted in the SUBACK; nothing it may not read is delivered.")
	w("")
	w("# --- every station, by pattern (%%u = SITE/DOOR) -----------------------------")
	w("pattern write %s/%%u/%s", p, LevelEvents)
	w("pattern write %s/%%u/%s", p, LevelStatus)
	w("pattern write %s/%%u/%s", p, LevelEPCIS)
	w("pattern write %s/%%u/%s/+", p, LevelReply)
	w("pattern write %s/%%u/%s/%s", p, LevelAllowlist, aclLevelAck)
	w("pattern write %s/%%u/%s", p, aclLevelReceiptProbe)
	w("pattern read %s/%%u/%s/+", p, LevelCommand)
	w("pattern read %s/%%u/%s", p, aclLevelReceipts)
	w("")
	w("# --- central: reads what stations send, writes commands, lists, receipts ----")
	w("# (subscribe with these filters or narrower ones; a shared subscription")
	w("# $share/GROUP/FILTER is checked against FILTER)")
	w("user %s", ACLCentralUser)
	for _, l := range []string{LevelEvents, LevelStatus, LevelEPCIS, LevelReply + "/+", LevelAllowlist + "/" + aclLevelAck, aclLevelReceiptProbe} {
		w("topic read %s/+/+/%s", p, l)
	}
	w("topic write %s/+/+/%s/+", p, LevelCommand)
	w("topic write %s/+/+/%s", p, aclLevelReceipts)
	w("topic write %s/+/%s/#", p, LevelAllowlist)
	w("")
	w("# --- monitoring dashboards: status only -----------------------------------")
	w("user %s", ACLMonitorUser)
	w("topic read %s/+/+/%s", p, LevelStatus)
	w("")
	w("# --- stations: their site's allowlist ---------------------------------------")
	for _, s := range stations {
		w("user %s", s.Username())
		w("topic read %s/%s/%s/#", p, s.Site, LevelAllowlist)
	}
	return []byte(b.String())
}
