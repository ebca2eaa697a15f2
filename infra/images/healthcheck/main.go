// Command healthcheck is the HEALTHCHECK of the runfleet images, which are
// FROM scratch and so have no shell, curl or redis-cli. It exits 0 when the
// server answers and 1 otherwise:
//
//	healthcheck redis 127.0.0.1:6379                        # PING answers +PONG
//	healthcheck http http://127.0.0.1:8080/healthz          # a 2xx status
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const timeout = 3 * time.Second

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck redis HOST:PORT | healthcheck http URL")
		os.Exit(2)
	}
	var err error
	switch kind, target := os.Args[1], os.Args[2]; kind {
	case "redis":
		err = pingRedis(target)
	case "http":
		err = getOK(target)
	default:
		fmt.Fprintf(os.Stderr, "healthcheck: unknown kind %q (want redis or http)\n", kind)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read PING reply from %s: %w", addr, err)
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis %s answered PING with %q", addr, strings.TrimSpace(line))
	}
	return nil
}

func getOK(url string) error {
	client := http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
