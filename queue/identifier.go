package queue

import "github.com/runfleet/runfleet/rftype"

// Identifier is a validated task identifier (rftype.Identifier): the queue's
// API speaks it everywhere, so it keeps a name here.
type Identifier = rftype.Identifier

// ParseIdentifier is rftype.ParseIdentifier, for the queue's own callers.
func ParseIdentifier(name, version string) (Identifier, error) {
	return rftype.ParseIdentifier(name, version)
}
