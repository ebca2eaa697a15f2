// Package jsonscan checks that a stream holds one JSON object without
// keeping any of it: encoding/json's Decoder holds each whole string or
// number, and a 256 MiB task input is mostly one string.
package jsonscan

import (
	"bufio"
	"fmt"
	"io"
)

// scanner reads bytes and counts them for error messages.
type scanner struct {
	r   *bufio.Reader
	off int64
}

func (s *scanner) next() (byte, error) {
	c, err := s.r.ReadByte()
	if err == io.EOF {
		return 0, fmt.Errorf("unexpected end of JSON input after %d bytes", s.off)
	}
	if err != nil {
		return 0, err
	}
	s.off++
	return c, nil
}

func (s *scanner) back() {
	_ = s.r.UnreadByte()
	s.off--
}

func (s *scanner) bad(c byte, what string) error {
	return fmt.Errorf("invalid character %q %s at byte %d", c, what, s.off)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// nonSpace returns the next byte that is not white space.
func (s *scanner) nonSpace() (byte, error) {
	for {
		c, err := s.next()
		if err != nil || !isSpace(c) {
			return c, err
		}
	}
}

// CheckObject reads r to its end and reports whether it is one JSON object
// (RFC 8259), with nothing but white space around it. Nesting is limited to
// 10,000 levels, as encoding/json limits it.
func CheckObject(r io.Reader) error {
	s := &scanner{r: bufio.NewReaderSize(r, 64<<10)}
	c, err := s.nonSpace()
	if err != nil {
		return err
	}
	if c != '{' {
		return fmt.Errorf("not a JSON object: it starts with %q", c)
	}
	if err := s.container('{'); err != nil {
		return err
	}
	for {
		c, err := s.r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.off++
		if !isSpace(c) {
			return fmt.Errorf("data after the JSON object at byte %d", s.off)
		}
	}
}

const maxDepth = 10000

// container reads the rest of an object or array whose opening byte was
// read, iteratively: the stack holds the open containers.
func (s *scanner) container(open byte) error {
	stack := []byte{open}
	first := true // just after an opening bracket
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		c, err := s.nonSpace()
		if err != nil {
			return err
		}
		closer := byte('}')
		if top == '[' {
			closer = ']'
		}
		if first && c == closer {
			stack, first = stack[:len(stack)-1], false
			if err := s.afterValue(&stack); err != nil {
				return err
			}
			continue
		}
		if top == '{' {
			if c != '"' {
				return s.bad(c, "looking for the beginning of an object key")
			}
			if err := s.str(); err != nil {
				return err
			}
			if c, err = s.nonSpace(); err != nil {
				return err
			}
			if c != ':' {
				return s.bad(c, "after an object key")
			}
			if c, err = s.nonSpace(); err != nil {
				return err
			}
		}
		first = false
		switch c {
		case '{', '[':
			if len(stack) >= maxDepth {
				return fmt.Errorf("JSON nested deeper than %d levels at byte %d", maxDepth, s.off)
			}
			stack, first = append(stack, c), true
			continue
		case '"':
			err = s.str()
		case 't':
			err = s.literal("rue")
		case 'f':
			err = s.literal("alse")
		case 'n':
			err = s.literal("ull")
		default:
			if c == '-' || (c >= '0' && c <= '9') {
				err = s.number(c)
			} else {
				err = s.bad(c, "looking for the beginning of a value")
			}
		}
		if err != nil {
			return err
		}
		if err := s.afterValue(&stack); err != nil {
			return err
		}
	}
	return nil
}

// afterValue reads what follows a value in the innermost open container:
// a comma (another member follows) or closing brackets, popping them.
func (s *scanner) afterValue(stack *[]byte) error {
	for len(*stack) > 0 {
		top := (*stack)[len(*stack)-1]
		c, err := s.nonSpace()
		if err != nil {
			return err
		}
		switch {
		case c == ',':
			return nil
		case (top == '{' && c == '}') || (top == '[' && c == ']'):
			*stack = (*stack)[:len(*stack)-1]
		default:
			return s.bad(c, "after a value")
		}
	}
	return nil
}

// str reads the rest of a string whose opening quote was read. Plain
// bytes are skipped a buffer at a time: strings are most of a big input.
func (s *scanner) str() error {
	for {
		if err := s.skipPlain(); err != nil {
			return err
		}
		c, err := s.next()
		if err != nil {
			return err
		}
		switch {
		case c == '"':
			return nil
		case c < 0x20:
			return s.bad(c, "in a string")
		case c == '\\':
			if c, err = s.next(); err != nil {
				return err
			}
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for range 4 {
					if c, err = s.next(); err != nil {
						return err
					}
					if !isHex(c) {
						return s.bad(c, "in a \\u escape")
					}
				}
			default:
				return s.bad(c, "in a string escape")
			}
		}
	}
}

// skipPlain skips string bytes that need no attention: not a quote, a
// backslash or a control character.
func (s *scanner) skipPlain() error {
	for {
		if s.r.Buffered() == 0 {
			if _, err := s.r.Peek(1); err != nil {
				return nil // next() reports it
			}
		}
		buf, _ := s.r.Peek(s.r.Buffered())
		n := 0
		for n < len(buf) && buf[n] != '"' && buf[n] != '\\' && buf[n] >= 0x20 {
			n++
		}
		_, _ = s.r.Discard(n)
		s.off += int64(n)
		if n < len(buf) {
			return nil
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *scanner) literal(rest string) error {
	for i := range len(rest) {
		c, err := s.next()
		if err != nil {
			return err
		}
		if c != rest[i] {
			return s.bad(c, "in a literal")
		}
	}
	return nil
}

// number reads the rest of a number whose first byte c was read, and
// leaves the byte after it unread. A number is never last in an object, so
// the end of input within one is an error.
func (s *scanner) number(c byte) error {
	var err error
	if c == '-' {
		if c, err = s.next(); err != nil {
			return err
		}
	}
	switch {
	case c == '0':
		c, err = s.next()
	case c >= '1' && c <= '9':
		c, err = s.digits()
	default:
		return s.bad(c, "in a number")
	}
	if err == nil && c == '.' {
		c, err = s.someDigits()
	}
	if err == nil && (c == 'e' || c == 'E') {
		if c, err = s.next(); err == nil && (c == '+' || c == '-') {
			c, err = s.next()
		}
		if err == nil {
			s.back()
			c, err = s.someDigits()
		}
	}
	if err != nil {
		return err
	}
	s.back()
	return nil
}

// someDigits reads one or more digits and returns the byte after them.
func (s *scanner) someDigits() (byte, error) {
	c, err := s.next()
	if err != nil {
		return 0, err
	}
	if c < '0' || c > '9' {
		return 0, s.bad(c, "in a number")
	}
	return s.digits()
}

// digits reads digits and returns the first byte that is not one.
func (s *scanner) digits() (byte, error) {
	for {
		c, err := s.next()
		if err != nil || c < '0' || c > '9' {
			return c, err
		}
	}
}
