package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Webhook is one notification target (controlplane/config.Webhook). URL may carry a secret
// and is never logged.
type Webhook struct {
	Name        string
	URL         string
	Slack       bool
	Timeout     time.Duration
	MaxAttempts int
}

// NotifierConsumer is the durable consumer every replica shares, so each new approval is
// posted once (at least once: a crash mid-delivery redelivers it).
const NotifierConsumer = "jitgate-webhooks"

// Notifier posts every new approval (jitgate.approvals.created) to the webhooks.
type Notifier struct {
	js       jetstream.JetStream
	hooks    []Webhook
	client   *http.Client
	log      *slog.Logger
	metrics  *Metrics
	backoff  time.Duration
	maxDelay time.Duration
}

// NewNotifier returns a notifier; Run starts it. Metrics may be the broker's.
func NewNotifier(js jetstream.JetStream, hooks []Webhook, log *slog.Logger, m *Metrics) *Notifier {
	if log == nil {
		log = slog.Default()
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Notifier{js: js, hooks: hooks, client: &http.Client{}, log: log, metrics: m,
		backoff: time.Second, maxDelay: 30 * time.Second}
}

// SetBackoff changes the first retry delay and the longest one (tests shorten them).
func (n *Notifier) SetBackoff(first, longest time.Duration) { n.backoff, n.maxDelay = first, longest }

// Run consumes created events until ctx ends. Without webhooks it returns at once.
func (n *Notifier) Run(ctx context.Context) error {
	if len(n.hooks) == 0 {
		return nil
	}
	cons, err := n.js.CreateOrUpdateConsumer(ctx, EventsStream, jetstream.ConsumerConfig{
		Durable: NotifierConsumer, FilterSubject: SubjectPrefix + "." + EventCreated,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 1,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		Description:   "jitgate: posts new approvals to the configured webhooks"})
	if err != nil {
		return fmt.Errorf("%w: webhook consumer: %v", ErrUnavailable, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { n.handle(ctx, m) })
	if err != nil {
		return fmt.Errorf("%w: webhook consumer: %v", ErrUnavailable, err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

func (n *Notifier) handle(ctx context.Context, m jetstream.Msg) {
	var ev Event
	if err := json.Unmarshal(m.Data(), &ev); err != nil || ev.Approval == nil {
		n.log.Error("approval event unreadable; not posted", "subject", m.Subject())
		_ = m.Term()
		return
	}
	for _, h := range n.hooks {
		n.deliver(ctx, m, h, &ev)
	}
	_ = m.Ack()
}

// deliver posts ev to h with up to MaxAttempts tries and exponential backoff.
func (n *Notifier) deliver(ctx context.Context, m jetstream.Msg, h Webhook, ev *Event) {
	body, err := n.payload(h, ev)
	if err != nil {
		n.metrics.webhook(h.Name, "failed")
		return
	}
	delay := n.backoff
	for attempt := 1; ; attempt++ {
		_ = m.InProgress() // keep the message ours while we retry
		err := n.post(ctx, h, body)
		if err == nil {
			n.metrics.webhook(h.Name, "ok")
			n.log.Info("approval posted to webhook", "webhook", h.Name, "approval_id", ev.Approval.ID, "attempt", attempt)
			return
		}
		if attempt >= h.MaxAttempts || ctx.Err() != nil {
			n.metrics.webhook(h.Name, "failed")
			n.log.Error("approval not posted to webhook; giving up", "webhook", h.Name, "approval_id", ev.Approval.ID,
				"attempts", attempt, "error", err.Error())
			return
		}
		n.metrics.webhook(h.Name, "retry")
		n.log.Warn("approval webhook failed; retrying", "webhook", h.Name, "approval_id", ev.Approval.ID,
			"attempt", attempt, "retry_in", delay.String(), "error", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, n.maxDelay)
	}
}

func (n *Notifier) payload(h Webhook, ev *Event) ([]byte, error) {
	if !h.Slack {
		return json.Marshal(ev)
	}
	a := ev.Approval
	text := fmt.Sprintf("*Approval %s* (%s mode) requested by agent `%s`\n%s\nApprover groups: %s · expires %s\nApprove: `%s`  ·  Deny: `jitgate deny %s --reason ...`",
		a.ID, a.Mode, a.Agent.ID, a.Waiting(), strings.Join(a.ApproverGroupNames(), ", "),
		a.ExpiresAt.UTC().Format(time.RFC3339), ev.ApproveCommand, a.ID)
	return json.Marshal(map[string]string{"text": text})
}

// post sends one request; the error never contains the URL (it may be a secret).
func (n *Notifier) post(ctx context.Context, h Webhook, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("bad webhook request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jitgate-approvals")
	resp, err := n.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // *url.Error's message would include the URL
		}
		return fmt.Errorf("post: %v", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered HTTP %d", resp.StatusCode)
	}
	return nil
}
