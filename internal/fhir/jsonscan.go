package fhir

import (
	"encoding/json"
	"errors"
)

// This file holds a small allocation-light walker over JSON text that has
// already been checked with json.Valid. It finds object members by name
// without decoding the rest of the document, which keeps compartment checks
// on the gateway's hot path cheap.

// errDuplicateKey reports an object with the same member name twice: a
// parser that keeps the first and one that keeps the last would disagree
// about the resource, so it is refused.
var errDuplicateKey = errors.New("duplicate object member")

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// trim returns b without surrounding white space.
func trim(b []byte) []byte {
	i := skipSpace(b, 0)
	j := len(b)
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default:
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && !isSpace(b[i]) {
			i++
		}
		return i
	}
}

// decodeString returns the Go string of the JSON string literal s (with its
// quotes), or false if s is not a string.
func decodeString(s []byte) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	inner := s[1 : len(s)-1]
	for _, c := range inner {
		if c == '\\' {
			var out string
			if json.Unmarshal(s, &out) != nil {
				return "", false
			}
			return out, true
		}
	}
	return string(inner), true
}

// keyEquals reports whether the JSON string literal lit names key.
func keyEquals(lit []byte, key string) bool {
	if len(lit) == len(key)+2 && string(lit[1:len(lit)-1]) == key {
		return true
	}
	for _, c := range lit {
		if c == '\\' {
			s, ok := decodeString(lit)
			return ok && s == key
		}
	}
	return false
}

// member returns the value of member key of the object obj (trimmed, valid
// JSON), or nil if obj is not an object or has no such member. A member
// named twice is errDuplicateKey.
func member(obj []byte, key string) ([]byte, error) {
	if len(obj) == 0 || obj[0] != '{' {
		return nil, nil
	}
	var found []byte
	i := skipSpace(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		end := skipString(obj, i)
		lit := obj[i:end]
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // ':'
		vend := skipValue(obj, i)
		if keyEquals(lit, key) {
			if found != nil {
				return nil, errDuplicateKey
			}
			found = obj[i:vend]
		}
		i = skipSpace(obj, vend)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return found, nil
}

// elements calls fn with each element of the array arr (trimmed, valid
// JSON) until fn returns an error.
func elements(arr []byte, fn func([]byte) error) error {
	i := skipSpace(arr, 1)
	for i < len(arr) && arr[i] != ']' {
		end := skipValue(arr, i)
		if err := fn(arr[i:end]); err != nil {
			return err
		}
		i = skipSpace(arr, end)
		if i < len(arr) && arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
	}
	return nil
}
