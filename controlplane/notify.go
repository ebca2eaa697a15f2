package controlplane

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/runfleet/runfleet/queue"
	"github.com/runfleet/runfleet/workflows"
)

// Job notifications. A job submitted with a notify URL gets a JSON POST of
// its final state each time it finishes (completed, failed or canceled; a
// retried job that finishes again is notified again; if it finishes again
// before the earlier notification went out, only the latest finish is
// sent). The body carries the state and finish time being notified. The transition that
// finishes the job records the pending notification in the same atomic step,
// and the gateway, the sweep and `runfleet sweep` deliver pending ones until
// the receiver answers 2xx, for up to NotifyGiveUp after the finish.
//
// The body is a Notification. Headers:
//
//	X-Runfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
//	X-Runfleet-Delivery:  <job id>/<finish unix ms>, the same for every retry
//
// keyed with the fleet's notification secret (`runfleet notification
// secret`). A receiver recomputes the HMAC, compares it in constant time,
// refuses old timestamps, and uses X-Runfleet-Delivery to drop duplicates
// (delivery is at least once).
const (
	SignatureHeader = "X-Runfleet-Signature"
	DeliveryHeader  = "X-Runfleet-Delivery"
	// NotifyGiveUp is how long after a job finished its notification is
	// retried.
	NotifyGiveUp = time.Hour
	// notifyLease keeps two deliverers from sending one notification at
	// once.
	notifyLease = 30 * time.Second
)

// Notification is the body of a job notification.
type Notification struct {
	Event string        `json:"event"` // "job.finished"
	Job   workflows.Job `json:"job"`
}

// Sign returns the signature header value for body at time t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a signature header against body, refusing
// signatures older than maxAge.
func VerifySignature(secret, header string, body []byte, now time.Time, maxAge time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("signature header %q: want t=<unix>,v1=<hex>", header)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxAge || d < -maxAge {
		return fmt.Errorf("signature is %s old, over %s", d.Round(time.Second), maxAge)
	}
	want := Sign(secret, time.Unix(sec, 0), body)
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return fmt.Errorf("signature does not match")
	}
	return nil
}

// notifyClient is the default HTTP client for deliveries: a few quick
// retries within one pass; later passes retry for up to NotifyGiveUp.
func notifyClient() *http.Client {
	rc := retryablehttp.NewClient()
	rc.RetryMax = 2
	rc.RetryWaitMin = 100 * time.Millisecond
	rc.RetryWaitMax = time.Second
	rc.Logger = nil
	// The last answer or error as it is: retryablehttp's own "giving up"
	// error repeats the URL, whose query may hold a receiver's secret.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.HTTPClient.Timeout = 10 * time.Second
	return rc.StandardClient()
}

// notifyBackoff is the wait before the next pass retries a failed delivery.
func notifyBackoff(attempts int) time.Duration {
	d := time.Second << min(attempts, 9)
	return min(d, 5*time.Minute)
}

// DeliverNotifications sends the pending job notifications that are due,
// once each, and reports how many were delivered and how many failed (and
// stay pending).
func (s *Server) DeliverNotifications(ctx context.Context) (delivered, failed int, err error) {
	q := s.cfg.Client.Queue()
	secret := ""   // read once per pass, when the first delivery needs it
	for range 10 { // at most 1,000 per pass
		now := s.cfg.Now()
		due, err := q.DueNotifications(ctx, now, 100)
		if err != nil || len(due) == 0 {
			return delivered, failed, err
		}
		progressed := false
		for _, n := range due {
			switch {
			case !n.Exists:
				err = q.DropNotification(ctx, n.JobID)
				progressed = true
			case n.Pending == "":
				if workflows.Finished(n.State) {
					err = q.DropNotification(ctx, n.JobID)
				} else {
					err = q.RecheckNotification(ctx, n.JobID, now.Add(queue.NotifyRecheck))
				}
				progressed = true
			default:
				ok, lerr := q.LeaseNotification(ctx, n.JobID, notifyLease)
				if lerr != nil {
					return delivered, failed, lerr
				}
				if !ok {
					continue // another deliverer has it
				}
				progressed = true
				if secret == "" {
					if secret, err = q.NotifySecret(ctx); err != nil {
						return delivered, failed, err
					}
				}
				if derr := s.deliver(ctx, secret, n.JobID, n.URL, n.Pending); derr == nil {
					delivered++
					err = q.NotificationDelivered(ctx, n.JobID, n.Pending)
				} else {
					failed++
					finished := finishTime(n.Pending)
					if !finished.IsZero() && now.Sub(finished) > NotifyGiveUp {
						s.log.Error("job notification abandoned", "job", n.JobID, "attempts", n.Attempts+1, "err", derr)
						err = q.NotificationAbandoned(ctx, n.JobID, n.Pending, derr.Error())
					} else {
						s.log.Warn("job notification failed; will retry", "job", n.JobID, "attempts", n.Attempts+1, "err", derr)
						err = q.NotificationFailed(ctx, n.JobID, now.Add(notifyBackoff(n.Attempts)))
					}
				}
			}
			if err != nil {
				return delivered, failed, err
			}
		}
		if !progressed {
			return delivered, failed, nil
		}
	}
	return delivered, failed, nil
}

func finishTime(pending string) time.Time {
	_, ms, _ := strings.Cut(pending, "|")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// deliver POSTs one notification and succeeds on a 2xx answer.
func (s *Server) deliver(ctx context.Context, secret, jobID, url, pending string) error {
	j, err := s.cfg.Client.Jobs().Get(ctx, jobID)
	if err != nil {
		return err
	}
	// The finish being notified, not whatever the job is doing now (it may
	// have been retried since).
	state, ms, _ := strings.Cut(pending, "|")
	if n, err := strconv.ParseInt(ms, 10, 64); err == nil && state != "" {
		j.State, j.FinishedAt = state, time.UnixMilli(n).UTC()
	}
	body, _ := json.Marshal(Notification{Event: "job.finished", Job: j})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify %s: %s", redactURL(url), withoutURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "runfleet-notify/1")
	req.Header.Set(SignatureHeader, Sign(secret, s.cfg.Now(), body))
	req.Header.Set(DeliveryHeader, jobID+"/"+ms)
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("notify %s: %s", redactURL(url), withoutURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("notify %s: answered %s", redactURL(url), resp.Status)
	}
	return nil
}

// withoutURL is the message of an HTTP client error without the request
// URL that net/http puts in it.
func withoutURL(err error) string {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// redactURL drops credentials and the query from a URL for logs.
func redactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if i := strings.Index(raw, "://"); i >= 0 {
		if at := strings.LastIndex(raw[i+3:], "@"); at >= 0 {
			raw = raw[:i+3] + raw[i+3+at+1:]
		}
	}
	return raw
}
