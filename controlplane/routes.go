package controlplane

import "net/http"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	return mux
}
