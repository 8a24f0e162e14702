package host

import "strings"

// ValidUTF8 is `s` with invalid bytes replaced, as the WIT's strings must be UTF-8.
func ValidUTF8(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
