// Package launch creates SMART EHR launch values: opaque, single-use strings
// an EHR passes to an app, which presents them to /authorize (with the
// `launch` scope) to bind the patient and encounter context chosen in the EHR.
// Only the SHA-256 hash of a value is stored.
package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/secret"
	"github.com/fhirgate/fhirgate/internal/storage"
)

// DefaultTTL is how long a launch value stays valid; it is also the maximum.
const DefaultTTL = 5 * time.Minute

// ErrInvalidContext is returned for a malformed launch context.
var ErrInvalidContext = errors.New("launch: invalid launch context")

// fhirID is the FHIR R4 id grammar.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// BareID accepts "Type/id" or "id" for resourceType and returns the bare id.
// An empty reference yields "". Anything else (another type, an absolute
// URL, a version, a bad id) is ErrInvalidContext.
func BareID(ref, resourceType string) (string, error) {
	if ref == "" {
		return "", nil
	}
	id := ref
	if t, rest, ok := strings.Cut(ref, "/"); ok {
		if t != resourceType {
			return "", fmt.Errorf("%w: %q is not a %s reference", ErrInvalidContext, ref, resourceType)
		}
		id = rest
	}
	if !fhirID.MatchString(id) {
		return "", fmt.Errorf("%w: %q is not a valid %s id", ErrInvalidContext, ref, resourceType)
	}
	return id, nil
}

// Normalize validates lc and returns it with bare Patient and Encounter ids.
func Normalize(lc storage.LaunchContext) (storage.LaunchContext, error) {
	var err error
	if lc.Patient, err = BareID(lc.Patient, "Patient"); err != nil {
		return lc, err
	}
	if lc.Encounter, err = BareID(lc.Encounter, "Encounter"); err != nil {
		return lc, err
	}
	if lc.FHIRContext != nil {
		var items []map[string]any
		if err := json.Unmarshal(lc.FHIRContext, &items); err != nil {
			return lc, fmt.Errorf("%w: fhirContext must be a JSON array of objects", ErrInvalidContext)
		}
	}
	return lc, nil
}

// Create validates lc, stores a new launch valid for ttl (DefaultTTL when
// zero; at most DefaultTTL) and returns its value, which is shown only once.
func Create(ctx context.Context, store storage.Launches, lc storage.LaunchContext, now time.Time, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if ttl > DefaultTTL {
		return "", fmt.Errorf("launch: lifetime %v exceeds %v", ttl, DefaultTTL)
	}
	lc, err := Normalize(lc)
	if err != nil {
		return "", err
	}
	value := secret.Token()
	l := &storage.Launch{Hash: storage.HashSecret(value), Context: lc, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := store.CreateLaunch(ctx, l); err != nil {
		return "", fmt.Errorf("launch: store: %w", err)
	}
	return value, nil
}
