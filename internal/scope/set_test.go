package scope

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseSet(t *testing.T) {
	set, unknown, err := ParseSet("openid  fhirUser launch/patient patient/Foo.rs email patient/*.rs openid email patient/Observation.read patient/Observation.rs")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := set.String(), "openid fhirUser launch/patient patient/*.rs patient/Observation.read patient/Observation.rs"; got != want {
		t.Errorf("set = %q, want %q", got, want)
	}
	if want := []string{"patient/Foo.rs", "email"}; !slices.Equal(unknown, want) {
		t.Errorf("unknown = %q, want %q", unknown, want)
	}
	if !set.Has(LaunchPatient) || !set.Has(Resource) || set.Has(OfflineAccess) {
		t.Error("Has is wrong")
	}

	empty, unknown, err := ParseSet("")
	if err != nil || len(empty) != 0 || len(unknown) != 0 {
		t.Errorf("ParseSet(\"\") = %v, %v, %v", empty, unknown, err)
	}
	if empty.String() != "" {
		t.Errorf("empty set String = %q", empty.String())
	}
}

func TestParseSetMalformed(t *testing.T) {
	for _, raw := range []string{
		"openid patient/Observation.dus",
		"patient/Foo.rs patient/Observation.rr", // malformed wins over unknown
		"openid\tprofile",
		"openid\nprofile",
		"launch patient/Observation.rs?",
	} {
		set, unknown, err := ParseSet(raw)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseSet(%q) err = %v; want ErrMalformed", raw, err)
		}
		if set != nil || unknown != nil {
			t.Errorf("ParseSet(%q) returned partial results with an error", raw)
		}
	}
}

func TestMustParseSetPanics(t *testing.T) {
	for _, raw := range []string{"patient/Observation.dus", "patient/Foo.rs"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MustParseSet(%q) did not panic", raw)
				}
			}()
			MustParseSet(raw)
		}()
	}
}

func TestPermits(t *testing.T) {
	s := MustParseSet("patient/Observation.r patient/Observation.s patient/Condition.rs?category=problem-list-item user/*.read openid")
	tests := []struct {
		c    Context
		typ  string
		p    Perm
		want bool
	}{
		{Patient, "Observation", Read, true},
		{Patient, "Observation", Read | Search, true}, // pooled from two scopes
		{Patient, "Observation", Update, false},
		{Patient, "Observation", Read | Create, false},
		{Patient, "Condition", Read, false}, // granular only: not unconditional
		{Patient, "Patient", Read, false},
		{User, "Patient", Read, true}, // wildcard
		{User, "Anything", Search, true},
		{User, "Patient", Delete, false},
		{System, "Patient", Read, false}, // never across contexts
		{Patient, "", Read, false},
		{Patient, "Observation", 0, false},
		{Patient, "Observation", Read | 0x80, false},
		{User, "*", Read, true},
		{Patient, "*", Read, false},
	}
	for _, tt := range tests {
		if got := s.Permits(tt.c, tt.typ, tt.p); got != tt.want {
			t.Errorf("Permits(%s, %q, %s) = %v, want %v", tt.c, tt.typ, tt.p, got, tt.want)
		}
	}
}

func TestQueries(t *testing.T) {
	s := MustParseSet("patient/Condition.rs?category=problem-list-item patient/Condition.r?category=health-concern " +
		"patient/Condition.s?category=health-concern patient/*.r?_security=N patient/Observation.rs")
	if got, want := s.Queries(Patient, "Condition", Read|Search), []string{"category=problem-list-item", "category=health-concern"}; !slices.Equal(got, want) {
		t.Errorf("Queries(rs) = %q, want %q", got, want)
	}
	if got, want := s.Queries(Patient, "Condition", Read), []string{"category=problem-list-item", "category=health-concern", "_security=N"}; !slices.Equal(got, want) {
		t.Errorf("Queries(r) = %q, want %q", got, want)
	}
	if got := s.Queries(Patient, "Condition", Update); got != nil {
		t.Errorf("Queries(u) = %q", got)
	}
	if got := s.Queries(User, "Condition", Read); got != nil {
		t.Errorf("Queries across context = %q", got)
	}
	if got := s.Queries(Patient, "Observation", Search); got != nil {
		t.Errorf("unconditional scope reported as a query: %q", got)
	}
	if got := s.Queries(Patient, "", Read); got != nil {
		t.Errorf("Queries for empty type = %q", got)
	}
}

func TestNarrow(t *testing.T) {
	lab := "patient/Observation.rs?" + labQuery
	tests := []struct {
		name, requested, allowed, want string
	}{
		{"wildcard allowed covers specific", "patient/Observation.rs", "patient/*.rs", "patient/Observation.rs"},
		{"wildcard requested yields specific", "patient/*.rs", "patient/Observation.rs patient/Condition.rs", "patient/Observation.rs patient/Condition.rs"},
		{"perms intersect", "patient/*.cruds", "patient/*.rs", "patient/*.rs"},
		{"perms disjoint", "patient/Observation.cud", "patient/*.rs", ""},
		{"cross context never", "user/Observation.rs", "patient/*.cruds system/*.cruds", ""},
		{"cross context never, patient from user", "patient/Observation.rs", "user/*.cruds", ""},
		{"type mismatch", "patient/Observation.rs", "patient/Condition.cruds", ""},
		{"v1 stays v1 when exact", "patient/Observation.read", "patient/*.cruds", "patient/Observation.read"},
		{"v1 write stays v1", "user/*.write", "user/*.*", "user/*.write"},
		{"v1 star stays v1", "system/*.*", "system/*.cruds", "system/*.*"},
		{"v1 narrowed to r becomes v2", "patient/Observation.read", "patient/Observation.r", "patient/Observation.r"},
		{"v1 star narrowed to rs becomes read", "patient/Observation.*", "patient/*.rs", "patient/Observation.read"},
		{"v1 narrowed by granular becomes v2", "patient/Observation.read", lab, lab},
		{"v2 never turned into v1", "patient/Observation.rs", "patient/Observation.read", "patient/Observation.rs"},
		{"v1 pieces pooled back to read", "patient/Observation.read", "patient/Observation.r patient/Observation.s", "patient/Observation.read"},
		{"query from allowed", "patient/Observation.rs", lab, lab},
		{"query from requested", lab, "patient/Observation.cruds", lab},
		{"same query both", lab, lab, lab},
		{"different queries", lab, "patient/Observation.rs?category=vital-signs", ""},
		{"granular through wildcard", "patient/*.rs", lab + " patient/Condition.rs", lab + " patient/Condition.rs"},
		{"piece within another dropped", "patient/Observation.rs", "patient/Observation.r patient/*.rs", "patient/Observation.rs"},
		{"granular within unconditional dropped", "patient/Observation.rs", lab + " patient/Observation.rs", "patient/Observation.rs"},
		{"non-resource kept when allowed", "openid fhirUser launch offline_access online_access", "openid launch offline_access", "openid launch offline_access"},
		{"dedupe across requests", "patient/Observation.rs patient/Observation.rs?" + labQuery + " patient/*.rs", "patient/Observation.rs", "patient/Observation.rs patient/Observation.rs?" + labQuery},
		{"request order kept", "offline_access patient/Condition.rs openid patient/Observation.rs", "patient/*.rs openid offline_access", "offline_access patient/Condition.rs openid patient/Observation.rs"},
		{"empty allowed", "openid patient/*.rs", "", ""},
		{"wildcard both", "user/*.rs", "user/*.r", "user/*.r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Narrow(MustParseSet(tt.requested), MustParseSet(tt.allowed))
			if got.String() != tt.want {
				t.Errorf("Narrow(%q, %q) = %q, want %q", tt.requested, tt.allowed, got, tt.want)
			}
			// Least privilege: everything granted lies within allowed and
			// within requested.
			if !Covers(MustParseSet(tt.allowed), got) {
				t.Errorf("result %q exceeds allowed %q", got, tt.allowed)
			}
			if !Covers(MustParseSet(tt.requested), got) {
				t.Errorf("result %q exceeds requested %q", got, tt.requested)
			}
		})
	}
}

// Narrowing is idempotent and the result is covered by both inputs, for
// every pair drawn from a pool of scopes.
func TestNarrowProperties(t *testing.T) {
	pool := MustParseSet("patient/*.rs patient/*.cruds patient/Observation.read patient/Observation.r patient/Observation.cud " +
		"patient/Observation.rs?" + labQuery + " patient/Observation.rs?category=vital-signs patient/Condition.rs user/*.read " +
		"user/Observation.s system/*.* openid launch/patient offline_access patient/*.s?_security=N")
	subsets := func(yield func(Set) bool) {
		for mask := 0; mask < 1<<len(pool); mask += 541 {
			var s Set
			for i := range pool {
				if mask&(1<<i) != 0 {
					s = append(s, pool[i])
				}
			}
			if !yield(s) {
				return
			}
		}
	}
	n := 0
	for req := range subsets {
		for allowed := range subsets {
			got := Narrow(req, allowed)
			if !Covers(allowed, got) || !Covers(req, got) {
				t.Fatalf("Narrow(%q, %q) = %q is not covered by both", req, allowed, got)
			}
			if again := Narrow(got, allowed); again.String() != got.String() {
				t.Fatalf("Narrow not idempotent: %q then %q", got, again)
			}
			if Covers(allowed, req) != Covers(got, req) {
				t.Fatalf("Covers(%q, %q) disagrees with Narrow result %q", allowed, req, got)
			}
			n++
		}
	}
	if n < 1000 {
		t.Fatalf("only %d pairs checked", n)
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		granted, requested string
		want               bool
	}{
		{"patient/*.rs", "patient/Observation.rs", true},
		{"patient/*.rs", "patient/Observation.read", true},
		{"patient/Observation.read", "patient/Observation.rs", true},
		{"patient/Observation.r patient/Observation.s", "patient/Observation.rs", true},
		{"patient/Observation.rs patient/Condition.rs", "patient/*.rs", false}, // wildcard includes future types
		{"patient/*.r", "patient/Observation.rs", false},
		{"user/*.cruds", "patient/Observation.r", false},
		{"patient/Observation.rs?" + labQuery, "patient/Observation.rs", false},
		{"patient/Observation.rs", "patient/Observation.rs?" + labQuery, true},
		{"patient/Observation.rs?category=vital-signs", "patient/Observation.rs?" + labQuery, false},
		{"openid fhirUser", "openid", true},
		{"openid", "openid fhirUser", false},
		{"", "", true},
		{"openid", "", true},
		{"", "offline_access", false},
		{"patient/*.cruds openid offline_access", "openid offline_access patient/Observation.rs patient/*.c", true},
	}
	for _, tt := range tests {
		if got := Covers(MustParseSet(tt.granted), MustParseSet(tt.requested)); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.granted, tt.requested, got, tt.want)
		}
	}
	// Hand-built invalid scopes are never covered.
	if Covers(MustParseSet("patient/*.cruds"), Set{{}}) {
		t.Error("zero scope covered")
	}
	if Covers(MustParseSet("patient/*.cruds"), Set{{Kind: Resource, Context: "doctor", Type: "*", Perms: Read}}) {
		t.Error("invalid context covered")
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		scope string
		want  string
	}{
		{"patient/Observation.rs?" + labQuery, "Read and search your laboratory results"},
		{"patient/Observation.rs?category=vital-signs", "Read and search your vital signs"},
		{"patient/Observation.rs?category=laboratory,vital-signs", "Read and search your laboratory results and vital signs"},
		{"patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item", "Read and search your problem list"},
		{"patient/Condition.rs?category=encounter-diagnosis", "Read and search your visit diagnoses"},
		{"patient/Condition.rs?category=health-concern", "Read and search your health concerns"},
		{"patient/Observation.rs?category=social-history", "Read and search your social history"},
		{"patient/Observation.rs?category=survey", "Read and search your survey and questionnaire answers"},
		{"patient/Observation.rs?category=imaging", "Read and search your imaging results"},
		{"patient/Observation.rs?category=exam", "Read and search your physical exam findings"},
		{"patient/Observation.rs?category=clinical-test", "Read and search your clinical test results"},
		{"user/*.cruds", "Create, read, update, delete and search all data you can access, including types of data added in the future"},
		{"patient/*.read", "Read and search all your health data, including types of data added in the future"},
		{"system/*.rs", "Read and search all data on this server, including types of data added in the future"},
		{"patient/Observation.read", "Read and search your observations (such as lab results and vital signs)"},
		{"patient/Observation.write", "Create, update and delete your observations (such as lab results and vital signs)"},
		{"patient/MedicationRequest.r", "Read your prescriptions and medication orders"},
		{"user/Encounter.s", "Search visits you can access"},
		{"system/Patient.r", "Read all patient details (such as name, birth date and contact information) on this server"},
		{"patient/ChargeItemDefinition.d", "Delete your charge item definition records"},
		{"patient/Observation.rs?code=http://loinc.org|4548-4", "Read and search your observations (such as lab results and vital signs), only where code is 4548-4"},
		{"patient/Observation.rs?category=laboratory&status=final", "Read and search your laboratory results, only where status is final"},
		{"openid", "Know who you are"},
		{"fhirUser", "Know who you are in the health record"},
		{"offline_access", "Keep access after you log out, until you revoke it"},
		{"online_access", "Keep access while you are logged in"},
		{"launch/patient", "Know which patient record is open"},
		{"launch/encounter", "Know which visit is open"},
	}
	for _, tt := range tests {
		if got := Describe(mustParse(t, tt.scope)); got != tt.want {
			t.Errorf("Describe(%q)\n got %q\nwant %q", tt.scope, got, tt.want)
		}
	}
	if got, want := DescribeFor(mustParse(t, "patient/Observation.rs?"+labQuery), ForClinician), "Read and search the patient's laboratory results"; got != want {
		t.Errorf("clinician wording = %q, want %q", got, want)
	}
	if got := DescribeFor(mustParse(t, "patient/*.rs"), ForClinician); !strings.Contains(got, "the patient's") || !strings.Contains(got, "added in the future") {
		t.Errorf("clinician wildcard wording = %q", got)
	}
	// Every non-resource kind and every R4 type gets a non-empty description.
	for k := OpenID; k <= OnlineAccess; k++ {
		if d := Describe(Scope{Kind: k}); d == "" || strings.HasPrefix(d, "Unrecognised") {
			t.Errorf("no description for kind %s", k)
		}
	}
	for _, ty := range ResourceTypes() {
		if d := Describe(Scope{Kind: Resource, Context: Patient, Type: ty, Perms: Read}); !strings.HasPrefix(d, "Read your ") {
			t.Errorf("Describe for %s = %q", ty, d)
		}
	}
	if d := Describe(Scope{}); d != "Unrecognised permission" {
		t.Errorf("zero scope description = %q", d)
	}
}

func BenchmarkParseSet(b *testing.B) {
	raw := "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs?" + labQuery +
		" patient/Condition.rs?category=problem-list-item patient/MedicationRequest.read patient/*.rs patient/AllergyIntolerance.rs"
	if n := len(strings.Fields(raw)); n != 10 {
		b.Fatalf("benchmark input has %d scopes, want 10", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseSet(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNarrow(b *testing.B) {
	req := MustParseSet("launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs?" + labQuery +
		" patient/Condition.rs?category=problem-list-item patient/MedicationRequest.read patient/*.rs patient/AllergyIntolerance.rs")
	allowed := MustParseSet("launch/patient openid fhirUser offline_access patient/*.rs user/*.rs")
	b.ReportAllocs()
	for b.Loop() {
		Narrow(req, allowed)
	}
}

// Large and hostile inputs stay linear: 20,000 distinct granular scopes,
// each repeated, parse and narrow quickly and are de-duplicated past the
// point where the map takes over.
func TestParseSetLarge(t *testing.T) {
	var b strings.Builder
	const n = 20000
	for i := range n {
		tok := "patient/Observation.rs?code=" + strings.Repeat("x", i%7+1) + "-" + strconv.Itoa(i)
		b.WriteString(tok + " " + tok + " ")
	}
	set, unknown, err := ParseSet(b.String())
	if err != nil || len(unknown) != 0 {
		t.Fatalf("ParseSet: %v, unknown %d", err, len(unknown))
	}
	if len(set) != n {
		t.Fatalf("got %d scopes, want %d distinct", len(set), n)
	}
	got := Narrow(set, MustParseSet("patient/Observation.r"))
	if len(got) != n || got[0].Perms != Read {
		t.Fatalf("Narrow of large set: %d scopes", len(got))
	}
	_, list, err := ParseSet(strings.Repeat("email phone ", 5000))
	if err != nil || !slices.Equal(list, []string{"email", "phone"}) {
		t.Fatalf("unknown de-duplication: %q %v", list, err)
	}
}

// FuzzNarrow checks, on arbitrary scope strings, that ParseSet output
// re-parses to itself and that Narrow never grants more than either side.
func FuzzNarrow(f *testing.F) {
	f.Add("patient/*.rs openid", "patient/Observation.rs launch/patient")
	f.Add("patient/Observation.read", "patient/Observation.r patient/Observation.s")
	f.Add("patient/*.cruds?category=laboratory", "patient/Observation.rs?category=laboratory user/*.*")
	f.Fuzz(func(t *testing.T, req, allowed string) {
		r, _, err1 := ParseSet(req)
		a, _, err2 := ParseSet(allowed)
		if err1 != nil || err2 != nil {
			return
		}
		again, unknown, err := ParseSet(r.String())
		if err != nil || len(unknown) != 0 || !slices.Equal(again, r) {
			t.Fatalf("ParseSet(%q).String() does not round-trip: %q, %v", req, again, err)
		}
		got := Narrow(r, a)
		if !Covers(a, got) || !Covers(r, got) {
			t.Fatalf("Narrow(%q, %q) = %q exceeds an input", r, a, got)
		}
		if Covers(a, r) != Covers(got, r) {
			t.Fatalf("Covers(%q, %q) disagrees with Narrow = %q", a, r, got)
		}
		if again := Narrow(got, a); again.String() != got.String() {
			t.Fatalf("Narrow not idempotent: %q then %q", got, again)
		}
	})
}
