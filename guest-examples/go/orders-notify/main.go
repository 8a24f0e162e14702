// The orders' notification step, as the Rust one: joins each validated order with its payment
// within 10 minutes of event time (1 minute of grace) and emails once per order.
package main

import (
	"fmt"
	"strings"

	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/join"
)

var paid = join.New("order-payment", 600_000).Grace(60_000)

func email(order []byte, status string) weir.Output {
	return weir.NewOutput(fmt.Sprintf(`{"order_id":"%s","email":"%s"}`, order, status)).WithKeyBytes(order)
}

func notify(record *weir.Record) ([]weir.Output, error) {
	payments, ok := weir.Config("payments")
	if !ok {
		payments = "payments"
	}
	side := join.Left
	if record.Input == payments {
		side = join.Right
	}
	if side == join.Left {
		text, err := record.Text()
		if err != nil || !strings.Contains(text, `"status":"VALIDATED"`) {
			return nil, err
		}
	}
	matches, _, err := paid.Add(side, record)
	var outputs []weir.Output
	for range matches {
		outputs = append(outputs, email(record.Key, "confirmed"))
	}
	return outputs, err
}

func expire(timer *weir.Timer) ([]weir.Output, error) {
	expired, _, err := paid.Expire(timer)
	var outputs []weir.Output
	for _, e := range expired {
		if e.Side == join.Left && !e.Matched {
			outputs = append(outputs, email(e.Key, "payment missing"))
		}
	}
	return outputs, err
}

func init() {
	weir.Register(weir.Processor{Process: notify, OnTimer: expire, Config: []string{"payments"}})
}

func main() {}
