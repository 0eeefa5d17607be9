// Package natsembed runs a NATS server inside this process, on 127.0.0.1
// and a random port: for the tests, the demo and `bulkhead serve
// --nats embedded`. It is the only importer of nats-server, which is
// heavy, so that the library's users never pull it in.
package natsembed

import (
	"errors"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded NATS server.
type Server struct{ s *server.Server }

// Start starts a server and waits until it takes connections.
func Start() (*Server, error) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.New("natsembed: the NATS server did not start within 10s")
	}
	return &Server{s: s}, nil
}

// URL is the server's client URL.
func (s *Server) URL() string { return s.s.ClientURL() }

// Close shuts the server down and waits until it has.
func (s *Server) Close() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}
