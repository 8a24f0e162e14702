//go:build !wasip1

package weir_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	weir "github.com/weir-rs/weir/sdk/go"
	"github.com/weir-rs/weir/sdk/go/state"
)

func countWords(record *weir.Record) ([]weir.Output, error) {
	text, err := record.Text()
	if err != nil {
		return nil, err
	}
	if text == "fail" {
		return nil, errors.New("asked to fail")
	}
	var outputs []weir.Output
	for _, word := range strings.Fields(text) {
		word = strings.ToLower(word)
		count, _, err := state.Get[uint64](word)
		if err != nil {
			return nil, err
		}
		if err := state.Put(word, count+1); err != nil {
			return nil, err
		}
		outputs = append(outputs, weir.NewOutput(strconv.FormatUint(count+1, 10)).WithKey(word))
	}
	return outputs, nil
}

func init() { weir.Register(weir.Processor{Process: countWords}) }

func TestCountsRunOnAcrossRecordsInState(t *testing.T) {
	out, err := weir.Run(weir.NewRecord(nil, []byte("a b")), weir.NewRecord(nil, []byte("A")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out {
		got = append(got, string(o.Key())+"="+string(o.Value()))
	}
	if strings.Join(got, " ") != "a=1 b=1 a=2" {
		t.Fatalf("got %v", got)
	}
}

func TestAnErrorOrAPanicNamesTheRecordThatFailed(t *testing.T) {
	_, err := weir.Run(weir.NewRecord(nil, []byte("ok")), weir.NewRecord(nil, []byte("fail")))
	if err == nil || !strings.Contains(err.Error(), "record 1: asked to fail") {
		t.Fatalf("got %v", err)
	}
	_, err = weir.Run(weir.NewRecord(nil, nil))
	if err == nil || !strings.Contains(err.Error(), "record 0: the record has no value (tombstone)") {
		t.Fatalf("got %v", err)
	}
}

func TestStateIsStoredAsTheOtherSDKsStoreIt(t *testing.T) {
	raw, err := state.Encode(map[string]any{"name": "<café>", "n": 3})
	if err != nil || string(raw) != `{"n":3,"name":"<café>"}` {
		t.Fatalf("got %s, %v", raw, err)
	}
	if raw, _ := state.Encode(uint64(42)); string(raw) != "42" {
		t.Fatalf("got %s", raw)
	}
}
