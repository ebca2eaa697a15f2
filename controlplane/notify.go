package controlplane

import "context"

// deliverNotifications sends the pending job notifications that are due.
func (s *Server) deliverNotifications(ctx context.Context) (delivered, failed int, err error) {
	return 0, 0, nil
}
