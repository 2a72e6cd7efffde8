package scope

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const labQuery = "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"

func TestParseValid(t *testing.T) {
	tests := []struct {
		in   string
		want Scope
	}{
		// v1
		{"patient/Observation.read", Scope{Kind: Resource, Context: Patient, Type: "Observation", Perms: Read | Search, V1: true}},
		{"user/*.write", Scope{Kind: Resource, Context: User, Type: "*", Perms: Create | Update | Delete, V1: true}},
		{"system/*.*", Scope{Kind: Resource, Context: System, Type: "*", Perms: AllPerms, V1: true}},
		{"patient/Patient.*", Scope{Kind: Resource, Context: Patient, Type: "Patient", Perms: AllPerms, V1: true}},
		// v2
		{"patient/Observation.rs", Scope{Kind: Resource, Context: Patient, Type: "Observation", Perms: Read | Search}},
		{"system/*.cruds", Scope{Kind: Resource, Context: System, Type: "*", Perms: AllPerms}},
		{"user/Encounter.c", Scope{Kind: Resource, Context: User, Type: "Encounter", Perms: Create}},
		{"user/Encounter.r", Scope{Kind: Resource, Context: User, Type: "Encounter", Perms: Read}},
		{"user/Encounter.u", Scope{Kind: Resource, Context: User, Type: "Encounter", Perms: Update}},
		{"user/Encounter.d", Scope{Kind: Resource, Context: User, Type: "Encounter", Perms: Delete}},
		{"user/Encounter.s", Scope{Kind: Resource, Context: User, Type: "Encounter", Perms: Search}},
		{"patient/Condition.cud", Scope{Kind: Resource, Context: Patient, Type: "Condition", Perms: Create | Update | Delete}},
		{"patient/Condition.crs", Scope{Kind: Resource, Context: Patient, Type: "Condition", Perms: Create | Read | Search}},
		{"patient/Condition.ds", Scope{Kind: Resource, Context: Patient, Type: "Condition", Perms: Delete | Search}},
		// granular
		{"patient/Observation.rs?" + labQuery, Scope{Kind: Resource, Context: Patient, Type: "Observation", Perms: Read | Search, Query: labQuery}},
		{"patient/Condition.rs?category=problem-list-item", Scope{Kind: Resource, Context: Patient, Type: "Condition", Perms: Read | Search, Query: "category=problem-list-item"}},
		{"user/Observation.rs?code=http://loinc.org|1234-5&status=final", Scope{Kind: Resource, Context: User, Type: "Observation", Perms: Read | Search, Query: "code=http://loinc.org|1234-5&status=final"}},
		{"patient/Observation.rs?code:in=http://x.org/vs%2F1", Scope{Kind: Resource, Context: Patient, Type: "Observation", Perms: Read | Search, Query: "code:in=http://x.org/vs%2F1"}},
		{"patient/*.rs?_security=R", Scope{Kind: Resource, Context: Patient, Type: "*", Perms: Read | Search, Query: "_security=R"}},
		// non-resource
		{"openid", Scope{Kind: OpenID}},
		{"fhirUser", Scope{Kind: FHIRUser}},
		{"profile", Scope{Kind: Profile}},
		{"launch", Scope{Kind: Launch}},
		{"launch/patient", Scope{Kind: LaunchPatient}},
		{"launch/encounter", Scope{Kind: LaunchEncounter}},
		{"offline_access", Scope{Kind: OfflineAccess}},
		{"online_access", Scope{Kind: OnlineAccess}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q", s, tt.in)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []string{
		"",
		"patient/Observation.dus", // out of order
		"patient/Observation.rr",  // repeated
		"patient/Observation.sr",  // out of order
		"patient/Observation.",    // empty suffix
		"patient/Observation",     // no suffix
		"patient/.rs",             // no type
		"patient/Obs-ervation.rs", // bad type characters
		"patient/Observation.x",   // unknown letter
		"patient/Observation.rsx", // trailing junk
		"patient/Observation.crudsc",
		"patient/Observation.Read",                     // case matters
		"patient/Observation.r.s",                      // two dots
		"patient/Observation.read?category=laboratory", // v1 with query
		"patient/Observation.rs?",                      // empty query
		"patient/Observation.rs?category",              // no '='
		"patient/Observation.rs?=laboratory",           // empty name
		"patient/Observation.rs?category=",             // empty value
		"patient/Observation.rs?a=b&&c=d",              // empty pair
		"patient/Observation.rs?a=b&",                  // trailing '&'
		"patient/Observation.rs?a;b=c",                 // bad name
		"patient/Observation.rs?a=%zz",                 // bad escape
		"patient/Foo.dus",                              // syntax beats unknown type
		"practitioner/Observation.rs",                  // unknown prefix
		"Patient/Observation.rs",                       // prefix is case-sensitive
		"patients/*.read",                              // unknown prefix
		"patient/Observation.rs\x00",                   // control character
		"patient/Observation.rs\t",                     // tab
		"open\"id",                                     // quote
		"open\\id",                                     // backslash
		"opéndi",                                       // non-ASCII
		"\x7f",                                         // DEL
	}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			got, err := Parse(in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %+v, %v; want ErrMalformed", in, got, err)
			}
			if errors.Is(err, ErrUnknown) {
				t.Fatalf("Parse(%q) error is both malformed and unknown", in)
			}
			if got != (Scope{}) {
				t.Errorf("Parse(%q) returned a non-zero scope with an error: %+v", in, got)
			}
		})
	}
}

func TestParseUnknown(t *testing.T) {
	tests := []string{
		"patient/Foo.rs",
		"patient/Foo.read",
		"patient/observation.rs", // not an R4 type name (case-sensitive)
		"user/DomainResource.rs", // abstract
		"system/Resource.read",
		"patient/SubscriptionTopic.rs", // R5 only
		"email",
		"address",
		"launch/location",
		"launch/patient?role=http://example.org/role",
		"__custom",
		"http://smarthealthit.org/fhir/scopes/patient/Observation.rs",
		"read",
		"launch/",
		"/rs",
	}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			_, err := Parse(in)
			if !errors.Is(err, ErrUnknown) {
				t.Fatalf("Parse(%q) err = %v; want ErrUnknown", in, err)
			}
		})
	}
}

// The error text is safe to use as an OAuth error_description (RFC 6749
// section 5.2: %x20-21 / %x23-5B / %x5D-7E) and never echoes bad bytes.
func TestErrorTextIsDescriptionSafe(t *testing.T) {
	for _, in := range []string{"patient/Obs\"x.rs", "a\x00b", "patient/Observation.dus", "x\\y", strings.Repeat("a/b.", 100)} {
		_, err := Parse(in)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", in)
		}
		msg := err.Error()
		for i := 0; i < len(msg); i++ {
			c := msg[i]
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Fatalf("error %q has byte %#x unsafe for error_description", msg, c)
			}
		}
		if len(msg) > 200 {
			t.Errorf("error text too long (%d bytes): %s", len(msg), msg)
		}
	}
}

func TestResourceTypes(t *testing.T) {
	types := ResourceTypes()
	if len(types) != 146 {
		t.Errorf("got %d R4 resource types, want 146", len(types))
	}
	if !slices.IsSorted(types) {
		t.Fatal("resource type table is not sorted; binary search would miss entries")
	}
	for _, ty := range types {
		if !IsResourceType(ty) {
			t.Errorf("IsResourceType(%q) = false", ty)
		}
	}
	for _, ty := range []string{"Patient", "Observation", "ValueSet", "VisionPrescription", "Account", "Binary", "Bundle", "MedicinalProductUndesirableEffect"} {
		if !IsResourceType(ty) {
			t.Errorf("IsResourceType(%q) = false", ty)
		}
	}
	for _, ty := range []string{"", "*", "patient", "Resource", "DomainResource", "Foo", "SubscriptionTopic"} {
		if IsResourceType(ty) {
			t.Errorf("IsResourceType(%q) = true", ty)
		}
	}
	types[0] = "Mutated"
	if !IsResourceType("Account") {
		t.Error("ResourceTypes returned the internal table")
	}
}

func TestPermString(t *testing.T) {
	tests := map[Perm]string{0: "", Read: "r", Read | Search: "rs", AllPerms: "cruds", Create | Delete: "cd", V1Write: "cud", 0xff: "cruds"}
	for p, want := range tests {
		if got := p.String(); got != want {
			t.Errorf("Perm(%d).String() = %q, want %q", p, got, want)
		}
	}
	for p := Perm(1); p <= AllPerms; p++ {
		got, ok := parsePerms(p.String())
		if !ok || got != p {
			t.Errorf("parsePerms(%q) = %v, %v; want %v", p.String(), got, ok, p)
		}
	}
}

func TestStringFallsBackToV2(t *testing.T) {
	tests := []struct {
		in   Scope
		want string
	}{
		{Scope{Kind: Resource, Context: Patient, Type: "Observation", Perms: Read, V1: true}, "patient/Observation.r"},
		{Scope{Kind: Resource, Context: Patient, Type: "Observation", Perms: V1Read, V1: true, Query: "category=laboratory"}, "patient/Observation.rs?category=laboratory"},
		{Scope{Kind: Resource, Context: Patient, Type: "Observation", Perms: V1Read, V1: true}, "patient/Observation.read"},
		{Scope{}, ""},
		{Scope{Kind: 99}, ""},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEquivalentAndWithin(t *testing.T) {
	v1 := mustParse(t, "patient/Observation.read")
	v2 := mustParse(t, "patient/Observation.rs")
	if !v1.Equivalent(v2) || v1 == v2 {
		t.Errorf("v1 .read and v2 .rs: Equivalent=%v, ==%v", v1.Equivalent(v2), v1 == v2)
	}
	if mustParse(t, "user/Observation.rs").Equivalent(v2) {
		t.Error("different contexts are equivalent")
	}
	if !mustParse(t, "patient/Observation.r").Within(mustParse(t, "patient/*.rs")) {
		t.Error("Observation.r not within *.rs")
	}
	if mustParse(t, "patient/*.r").Within(mustParse(t, "patient/Observation.rs")) {
		t.Error("*.r within Observation.rs")
	}
	if mustParse(t, "patient/Observation.rs").Within(mustParse(t, "patient/Observation.rs?"+labQuery)) {
		t.Error("unconditional within granular")
	}
	if !mustParse(t, "patient/Observation.r?"+labQuery).Within(mustParse(t, "patient/Observation.rs")) {
		t.Error("granular not within unconditional")
	}
	if mustParse(t, "user/Observation.r").Within(mustParse(t, "patient/*.cruds")) {
		t.Error("user within patient")
	}
	if !mustParse(t, "openid").Within(mustParse(t, "openid")) || mustParse(t, "openid").Within(mustParse(t, "profile")) {
		t.Error("non-resource Within")
	}
}

func mustParse(t testing.TB, s string) Scope {
	t.Helper()
	sc, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return sc
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"patient/Observation.rs", "patient/Observation.read", "user/*.cruds", "system/*.*",
		"patient/Observation.rs?" + labQuery, "openid", "launch/patient", "patient/Observation.dus",
		"patient/Foo.rs", "patient/Observation.rs?a=b&c=d", "x/y.z", "patient/*.rs?_security=R%20x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknown) {
				t.Fatalf("Parse(%q): error %v wraps neither sentinel", s, err)
			}
			if sc != (Scope{}) {
				t.Fatalf("Parse(%q) returned %+v with error", s, sc)
			}
			return
		}
		text := sc.String()
		if text != s {
			t.Fatalf("Parse(%q).String() = %q, not canonical", s, text)
		}
		again, err := Parse(text)
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", text, s, err)
		}
		if again != sc {
			t.Fatalf("re-parse of %q = %+v, want %+v", text, again, sc)
		}
		// A parsed scope is always within itself and covered by itself.
		if !sc.Within(sc) || !Covers(Set{sc}, Set{sc}) {
			t.Fatalf("%q not within/covered by itself", s)
		}
		if d := Describe(sc); d == "" {
			t.Fatalf("empty description for %q", s)
		}
	})
}
