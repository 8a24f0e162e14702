"""The Python SDK on plain CPython, through its in-memory stand-in for the host: batches decode
into records, outputs encode into weir's columns, state pages through scans, errors name the
record. Run: python3 -m unittest discover sdk/python/tests"""

import sys
import unittest
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import weir  # noqa: E402
from weir import Output, Record, state, table  # noqa: E402
from weir._host import NATIVE, Err, types  # noqa: E402
from weir._host import state as host_state  # noqa: E402
from weir._host import tables as host_tables  # noqa: E402
from weir._host import timers as host_timers  # noqa: E402
from weir.join import LEFT, RIGHT, Join  # noqa: E402
from weir.window import Windows  # noqa: E402

ABSENT = 0xFFFF_FFFF


def batch(*records, stamps=None):
    """A batch of (key, value, headers) records, encoded as weir's host encodes them."""
    data, rows, headers = bytearray(), array("I"), array("I")

    def put(b):
        if b is None:
            return 0, ABSENT
        at = len(data)
        data.extend(b)
        return at, len(b)

    for key, value, hs in records:
        first = len(headers) // 4
        for name, v in hs:
            headers.extend(put(name.encode()) + put(v))
        rows.extend(put(key) + put(value) + (first, len(hs)))
    n = len(records)
    offsets, timestamps = array("q", range(10, 10 + n)), array("q", stamps or [1_700_000_000_000] * n)
    return types.Batch("in", "orders", 3, offsets.tobytes(), timestamps.tobytes(), rows.tobytes(), headers.tobytes(), bytes(data))


def decode(outputs):
    rows, hs = memoryview(outputs.records).cast("I"), memoryview(outputs.headers).cast("I")
    d = outputs.data

    def get(at, n):
        return None if n == ABSENT else d[at : at + n]

    out = []
    for i in range(len(rows) // 8):
        r = rows[8 * i : 8 * i + 8]
        headers = [(get(hs[4 * h], hs[4 * h + 1]).decode(), get(hs[4 * h + 2], hs[4 * h + 3])) for h in range(r[6], r[6] + r[7])]
        out.append((get(r[0], r[1]), get(r[2], r[3]), get(r[4], r[5]), headers))
    return out, memoryview(outputs.sources).cast("I").tolist(), memoryview(outputs.timestamps).cast("q").tolist()


def run(function, b, config=()):
    weir._function, weir._accepted = function, ()
    processor = weir.Processor()
    processor.init(list(config))
    return processor.process(b)


def run_with_timers(function, on_timer, stamped, input="in"):
    """Runs (key, timestamp) records as one batch (values: the key), then does what weir does
    after a batch: moves event time to the newest timestamp and fires the due event-time
    timers."""
    weir._function, weir._accepted, weir._on_timer = function, (), on_timer
    b = batch(*[(k, k, []) for k, _ in stamped], stamps=[t for _, t in stamped])
    b.input = input
    out = weir.Processor().process(b)
    host_timers.now = max([host_timers.now] + [t for _, t in stamped])
    fired = decode(weir.TimerHandler().on_timer(host_timers.take_due(types.Clock.EVENT_TIME, host_timers.now)))
    return decode(out)[0] + fired[0]


class SdkTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(NATIVE, "these tests run on plain CPython, not in a component")
        host_state.store.clear()
        host_timers.pending.clear()
        host_timers.now = -1
        weir._on_timer = None

    def test_records_carry_key_value_headers_offset_timestamp_and_where_they_came_from(self):
        seen = []
        run(seen.append, batch((b"k", b"v", [("h", b"1"), ("h", b"2")]), (None, None, [])))
        first, second = seen
        self.assertEqual((first.key, first.value, first.headers), (b"k", b"v", [("h", b"1"), ("h", b"2")]))
        self.assertEqual((first.offset, first.timestamp, first.topic, first.partition, first.input), (10, 1_700_000_000_000, "orders", 3, "in"))
        self.assertEqual((second.key, second.value, second.headers, second.offset), (None, None, [], 11))
        self.assertEqual(first.header("h"), b"1")

    def test_map_value_keeps_key_and_headers_and_a_tombstone_stays_one(self):
        out = run(lambda r: r.map_value(bytes.upper), batch((b"k", b"abc", [("h", b"x")]), (b"gone", None, [])))
        rows, sources, timestamps = decode(out)
        self.assertEqual(rows, [(None, b"k", b"ABC", [("h", b"x")]), (None, b"gone", None, [])])
        self.assertEqual((sources, timestamps), ([0, 1], [-1, -1]))

    def test_outputs_name_topic_key_headers_timestamp_and_several_per_record(self):
        def split(record):
            return [Output(w, key=w, topic="words", headers=[("from", record.key)], timestamp=5) for w in record.text().split()]

        rows, sources, timestamps = decode(run(split, batch((b"r", b"a b", []))))
        self.assertEqual(rows, [(b"words", b"a", b"a", [("from", b"r")]), (b"words", b"b", b"b", [("from", b"r")])])
        self.assertEqual((sources, timestamps), ([0, 0], [5, 5]))

    def test_an_exception_fails_the_batch_naming_the_record(self):
        with self.assertRaises(Err) as failed:
            run(lambda r: r.text() and None, batch((None, b"fine", []), (None, b"\xff", [])))
        self.assertEqual(failed.exception.value.record, 1)
        self.assertIn("UnicodeDecodeError", failed.exception.value.message)

    def test_returning_something_other_than_outputs_is_an_error_that_says_so(self):
        with self.assertRaises(Err) as failed:
            run(lambda r: r.value, batch((None, b"v", [])))
        self.assertIn("not a bare value", failed.exception.value.message)

    def test_a_header_without_a_value_is_refused_by_name(self):
        with self.assertRaisesRegex(TypeError, "header 'trace' has no value"):
            Output(b"v", headers=[("trace", None)])

    def test_unknown_config_keys_are_refused_and_known_ones_readable(self):
        weir._function, weir._accepted = (lambda r: None), ("limit",)
        with self.assertRaises(Err) as failed:
            weir.Processor().init([("limti", "3")])
        self.assertEqual(failed.exception.value, "unknown config key `limti`; this processor accepts: limit")
        weir.Processor().init([("limit", "3")])
        self.assertEqual(weir.config("limit"), "3")

    def test_state_is_json_like_the_rust_sdk_and_scans_page_through_everything(self):
        state.put("n", 41)
        self.assertEqual((state.get("n"), state.get_bytes("n"), state.get("missing", 0)), (41, b"41", 0))
        state.put("s", "straße")
        self.assertEqual(state.get_bytes("s"), '"straße"'.encode())
        for i in range(600):
            state.put(f"p/{i:04}", i)
        state.put("p0", "outside")
        keys = [k for k, _ in state.scan_prefix("p/")]
        self.assertEqual(len(keys), 600)
        self.assertEqual(keys, sorted(keys))
        state.delete("n")
        self.assertIsNone(state.get("n"))

    def test_table_lookups_decode_json_and_miss_as_the_default(self):
        host_tables.set("customers", b"c1", b'{"name": "Ada"}')
        self.assertEqual(table.get("customers", "c1"), {"name": "Ada"})
        self.assertEqual(table.get("customers", "c2", "unknown"), "unknown")
        self.assertEqual(table.get_bytes("customers", b"c1"), b'{"name": "Ada"}')

    def test_state_that_is_not_json_is_an_error_naming_the_key(self):
        state.put_bytes("raw", b"\x00")
        with self.assertRaisesRegex(ValueError, "'raw' does not decode"):
            state.get("raw")

    def test_a_window_emits_once_at_end_plus_grace_and_later_records_are_left_out(self):
        windows = Windows.tumbling("counts", 10).grace(5)

        def count(record):
            windows.aggregate(record, record.key, lambda n: n + 1, initial=0)

        def emit(timer):
            w = windows.close(timer)
            return None if w is None else weir.Output(f"{w.start}:{w.value}", key=w.key)

        # [0, 10) closes at 15: the record at 3 after event time 12 is within grace.
        self.assertEqual(run_with_timers(count, emit, [(b"a", 1), (b"a", 12), (b"a", 3)]), [])
        out = run_with_timers(count, emit, [(b"a", 15), (b"a", 4)])
        self.assertEqual([(key, value) for _, key, value, _ in out], [(b"a", b"0:2")])
        out = run_with_timers(count, emit, [(b"a", 40)])
        self.assertEqual([value for _, _, value, _ in out], [b"10:2"])
        self.assertEqual(Windows.hopping("h", 10, 5).starts(12), [5, 10])
        self.assertEqual(Windows.hopping("h", 10, 5).starts(-3), [-10, -5])

    def test_records_join_within_the_window_and_unjoined_ones_expire_once(self):
        paid = Join("paid", 10).grace(5)

        def join(record):
            side = RIGHT if record.input == "payments" else LEFT
            return [record.map_value(lambda v, m=m: v + b"+" + m.value) for m in paid.add(side, record) or []]

        def unpaid(timer):
            expired = paid.expire(timer) or []
            return [weir.Output(b"unpaid " + e.value, key=e.key) for e in expired if e.side == LEFT and not e.matched]

        def values(out):
            return [value for _, _, value, _ in out]

        self.assertEqual(run_with_timers(join, unpaid, [(b"o1", 100), (b"o2", 101)], "orders"), [])
        self.assertEqual(values(run_with_timers(join, unpaid, [(b"o1", 109), (b"o2", 112)], "payments")), [b"o1+o1"])
        self.assertEqual(values(run_with_timers(join, unpaid, [(b"o9", 116)], "payments")), [b"unpaid o2"])
        self.assertEqual(run_with_timers(join, unpaid, [(b"o1", 100)], "payments"), [])

    def test_a_timer_without_a_handler_and_a_failing_handler_fail_naming_the_timer(self):
        timer = types.Timer(types.Clock.WALL_CLOCK, 5, b"k")
        with self.assertRaises(Err) as caught:
            weir.TimerHandler().on_timer([timer])
        self.assertIn("no function handles timers", caught.exception.value.message)
        weir._on_timer = lambda t: 1 / 0
        with self.assertRaises(Err) as caught:
            weir.TimerHandler().on_timer([timer, timer])
        self.assertEqual((caught.exception.value.record, caught.exception.value.message), (0, "ZeroDivisionError: division by zero"))


if __name__ == "__main__":
    unittest.main()
