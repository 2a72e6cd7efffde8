package chain

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// JSONEvent is the plain-JSON form of an event (file sink lines, the
// "json" export format and the admin API).
type JSONEvent struct {
	Time            time.Time `json:"time"`
	Action          string    `json:"action"`
	Outcome         string    `json:"outcome"`
	Reason          string    `json:"reason,omitempty"`
	UserID          string    `json:"user,omitempty"`
	FHIRUser        string    `json:"fhir_user,omitempty"`
	ClientID        string    `json:"client_id,omitempty"`
	SourceIP        string    `json:"source_ip,omitempty"`
	UserAgent       string    `json:"user_agent,omitempty"`
	Patient         string    `json:"patient,omitempty"`
	Scope           string    `json:"scope,omitempty"`
	TokenID         string    `json:"jti,omitempty"`
	RequestID       string    `json:"request_id,omitempty"`
	Interaction     string    `json:"interaction,omitempty"`
	ResourceType    string    `json:"resource_type,omitempty"`
	ResourceID      string    `json:"resource_id,omitempty"`
	EntriesFiltered int       `json:"entries_filtered,omitempty"`
	AllowedBy       string    `json:"allowed_by,omitempty"`
	Binding         string    `json:"binding,omitempty"`
}

// JSONEntry is the plain-JSON form of an entry; hashes are lower-case hex.
type JSONEntry struct {
	Node  string    `json:"node"`
	Seq   uint64    `json:"seq"`
	Prev  string    `json:"prev"`
	Hash  string    `json:"hash"`
	Event JSONEvent `json:"event"`
}

// ToJSON converts an entry to its JSON form.
func ToJSON(e Entry) JSONEntry {
	ev := Normalize(e.Event)
	return JSONEntry{
		Node: e.Node, Seq: e.Seq, Prev: hex.EncodeToString(e.Prev), Hash: hex.EncodeToString(e.Hash),
		Event: JSONEvent{
			Time: ev.Time, Action: string(ev.Action), Outcome: string(ev.Outcome), Reason: ev.Reason,
			UserID: ev.UserID, FHIRUser: ev.FHIRUser, ClientID: ev.ClientID, SourceIP: ev.SourceIP,
			UserAgent: ev.UserAgent, Patient: ev.Patient, Scope: ev.Scope, TokenID: ev.TokenID,
			RequestID: ev.RequestID, Interaction: ev.Interaction, ResourceType: ev.ResourceType,
			ResourceID: ev.ResourceID, EntriesFiltered: ev.EntriesFiltered, AllowedBy: ev.AllowedBy,
			Binding: string(ev.Binding),
		},
	}
}

// FromJSON converts the JSON form back to an entry.
func FromJSON(j JSONEntry) (Entry, error) {
	prev, err := hex.DecodeString(j.Prev)
	if err != nil {
		return Entry{}, fmt.Errorf("audit entry %d: prev: %w", j.Seq, err)
	}
	hash, err := hex.DecodeString(j.Hash)
	if err != nil {
		return Entry{}, fmt.Errorf("audit entry %d: hash: %w", j.Seq, err)
	}
	v := j.Event
	return Entry{Node: j.Node, Seq: j.Seq, Prev: prev, Hash: hash, Event: audit.Event{
		Time: v.Time.UTC(), Action: audit.Action(v.Action), Outcome: audit.Outcome(v.Outcome), Reason: v.Reason,
		UserID: v.UserID, FHIRUser: v.FHIRUser, ClientID: v.ClientID, SourceIP: v.SourceIP,
		UserAgent: v.UserAgent, Patient: v.Patient, Scope: v.Scope, TokenID: v.TokenID,
		RequestID: v.RequestID, Interaction: v.Interaction, ResourceType: v.ResourceType,
		ResourceID: v.ResourceID, EntriesFiltered: v.EntriesFiltered, AllowedBy: v.AllowedBy,
		Binding: audit.Binding(v.Binding),
	}}, nil
}

// JSONCheckpoint is the JSON form of a checkpoint.
type JSONCheckpoint struct {
	Node      string    `json:"node"`
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	Signature string    `json:"signature,omitempty"`
}

// CheckpointToJSON converts a checkpoint to its JSON form.
func CheckpointToJSON(cp Checkpoint) JSONCheckpoint {
	return JSONCheckpoint{Node: cp.Node, Seq: cp.Seq, Hash: hex.EncodeToString(cp.Hash), Time: cp.Time.UTC().Truncate(time.Microsecond), Signature: cp.Signature}
}

// CheckpointFromJSON converts the JSON form back to a checkpoint.
func CheckpointFromJSON(j JSONCheckpoint) (Checkpoint, error) {
	h, err := hex.DecodeString(j.Hash)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit checkpoint %d: hash: %w", j.Seq, err)
	}
	return Checkpoint{Node: j.Node, Seq: j.Seq, Hash: h, Time: j.Time.UTC(), Signature: j.Signature}, nil
}
