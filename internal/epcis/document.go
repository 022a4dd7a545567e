package epcis

import (
	"encoding/json"
	"fmt"
	"time"
)

// Document is an EPCISDocument (EPCIS 2.0 §10, JSON binding). Marshal it
// with encoding/json; member order is fixed, so equal inputs give equal
// bytes.
type Document struct {
	Context       []any  `json:"@context"`
	Type          string `json:"type"`
	SchemaVersion string `json:"schemaVersion"`
	CreationDate  string `json:"creationDate"`
	EPCISBody     struct {
		EventList []*Event `json:"eventList"`
	} `json:"epcisBody"`
}

// QueryDocument is an EPCISQueryDocument: the result of a named query
// (EPCIS 2.0 query interface), holding events.
type QueryDocument struct {
	Context       []any  `json:"@context"`
	Type          string `json:"type"`
	SchemaVersion string `json:"schemaVersion"`
	CreationDate  string `json:"creationDate"`
	EPCISBody     struct {
		QueryResults struct {
			QueryName      string `json:"queryName"`
			SubscriptionID string `json:"subscriptionID,omitempty"`
			ResultsBody    struct {
				EventList []*Event `json:"eventList"`
			} `json:"resultsBody"`
		} `json:"queryResults"`
	} `json:"epcisBody"`
}

// context is the @context of every document: the EPCIS 2.0 context and
// the dockd: extension prefix.
func context(c Config) []any {
	ns := c.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	return []any{ContextURL, map[string]string{"dockd": ns}}
}

// NewDocument wraps events in an EPCISDocument created at created. events
// may be empty (an empty eventList is valid).
func NewDocument(c Config, created time.Time, events ...*Event) *Document {
	d := &Document{Context: context(c), Type: "EPCISDocument", SchemaVersion: SchemaVersion, CreationDate: created.UTC().Format(timeFormat)}
	d.EPCISBody.EventList = append([]*Event{}, events...)
	return d
}

// NewQueryDocument wraps events in an EPCISQueryDocument answering the
// query queryName (and subscriptionID, when the result is for a
// subscription; "" leaves it out).
func NewQueryDocument(c Config, created time.Time, queryName, subscriptionID string, events ...*Event) *QueryDocument {
	d := &QueryDocument{Context: context(c), Type: "EPCISQueryDocument", SchemaVersion: SchemaVersion, CreationDate: created.UTC().Format(timeFormat)}
	d.EPCISBody.QueryResults.QueryName = queryName
	d.EPCISBody.QueryResults.SubscriptionID = subscriptionID
	d.EPCISBody.QueryResults.ResultsBody.EventList = append([]*Event{}, events...)
	return d
}

// StationDocument is what the station publishes on its epcis topic for one
// stored custody event: an EPCISDocument holding its one event, created at
// the event's own time (never the wall clock at publish time), so every
// re-delivery of the record is byte-identical. Records without a rendering
// return an error wrapping ErrNotRendered or ErrNoObject.
func StationDocument(stored []byte, c Config) ([]byte, error) {
	e, err := RenderJSON(stored, c)
	if err != nil {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339Nano, e.EventTime)
	if err != nil {
		return nil, fmt.Errorf("epcis: event time %q: %w", e.EventTime, err)
	}
	b, err := json.Marshal(NewDocument(c, t, e))
	if err != nil {
		return nil, fmt.Errorf("epcis: encoding document for seq %d: %w", e.Seq, err)
	}
	return b, nil
}

// DecodeDocument reads an EPCISDocument this package produced (what the
// station publishes), so a consumer can store its events and wrap them
// again (NewQueryDocument): re-marshalling a decoded document gives the
// same bytes. Members this package does not produce are dropped.
func DecodeDocument(b []byte) (*Document, error) {
	var d Document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("epcis: decoding document: %w", err)
	}
	if d.Type != "EPCISDocument" {
		return nil, fmt.Errorf("epcis: decoding document: type %q, want EPCISDocument", d.Type)
	}
	for i, e := range d.EPCISBody.EventList {
		if e == nil || (e.Type != "ObjectEvent" && e.Type != "AggregationEvent") {
			return nil, fmt.Errorf("epcis: decoding document: event %d is not an ObjectEvent or AggregationEvent", i)
		}
	}
	return &d, nil
}
