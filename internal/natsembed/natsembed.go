// Package natsembed runs a NATS server inside this process, on 127.0.0.1
// and a random port: for the tests, `bulkhead demo --nodes` and `bulkhead
// storm --nodes`. It is the only importer of nats-server, which is heavy,
// so that the library's users never pull it in.
package natsembed

import (
	"errors"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded NATS server.
type Server struct{ s *server.Server }

// Start starts a server and waits until it takes connections.
func Start() (*Server, error) { return StartAt(server.RANDOM_PORT) }

// StartAt starts a server on port of 127.0.0.1, as Start does.
func StartAt(port int) (*Server, error) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
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
