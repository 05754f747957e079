"""A participant that speaks Streamlit's WebSocket protocol directly instead of driving a browser.

Thirty headless Chromium pages need more CPU than our two cores have (the browsers cost about 0.7 CPU-seconds per
answer, the server about 0.03), so with real browsers the benchmark mostly measures the browsers. This client sends
the same messages the browser sends (a rerun request with the widget states of the clicked controls), reads the
server's messages up to the end of the run, fetches the images the new page shows, and times that: the server's
answer latency as a participant on their own computer would see it, minus their browser's rendering. Element
trees are parsed with streamlit.testing (the library's own parser); widget states are built as the frontend
builds them (pinned Streamlit version: the protocol is not a public API).
"""
from __future__ import annotations

import asyncio
import random
import time
import urllib.request

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1.element_tree import ElementTree, parse_tree_from_messages

FINISHED_EARLY_FOR_RERUN = ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN


class ProtocolSession:
    """One browser tab's worth of protocol: a WebSocket to /_stcore/stream and the page it shows."""

    def __init__(self, ws, url: str, query: str) -> None:
        self.ws, self.url, self.query, self.page_hash = ws, url, query, ""
        self.tree: ElementTree | None = None

    async def rerun(self, states: list[WidgetState] = ()) -> ElementTree:
        """Send a rerun request and collect the page up to its run's end (through any st.rerun)."""
        msg = BackMsg()
        msg.rerun_script.query_string = self.query
        msg.rerun_script.page_script_hash = self.page_hash
        msg.rerun_script.widget_states.widgets.extend(states)
        await self.ws.send(msg.SerializeToString())
        deltas: list[ForwardMsg] = []
        while True:
            forward = ForwardMsg.FromString(await self.ws.recv())
            kind = forward.WhichOneof("type")
            if kind == "new_session":
                deltas, self.page_hash = [], forward.new_session.page_script_hash
            elif kind == "delta":
                deltas.append(forward)
            elif kind == "script_finished" and forward.script_finished != FINISHED_EARLY_FOR_RERUN:
                self.tree = parse_tree_from_messages(deltas)
                return self.tree

    async def fetch_images(self) -> None:
        """GET every image on the page, as the browser would after the run."""
        urls = [img.url for element in self.tree.get("imgs") for img in element.proto.imgs]
        for url in urls:
            await asyncio.to_thread(lambda u=url: urllib.request.urlopen(self.url + u, timeout=60).read())


def click(button) -> WidgetState:
    return WidgetState(id=button.id, trigger_value=True)


def rating_answer(tree: ElementTree, digit: int, rating: int) -> list[WidgetState]:
    """The segmented control, the 1–7 radio and the form's submit button, as the frontend sends them."""
    chosen = WidgetState(id=tree.get("button_group")[0].id)
    chosen.string_array_value.data[:] = [str(digit)]
    radio = WidgetState(id=tree.radio[0].id, string_value=str(rating))
    return [chosen, radio, click(tree.button[0])]


async def run_protocol_participant(url: str, who, think: tuple[float, float], rng: random.Random,
                                   arrival: float, completion_code: str) -> None:
    """Consent to completion code over the protocol; fills `who` like the browser participant does."""
    await asyncio.sleep(rng.uniform(0, arrival))
    stream = url.replace("http://", "ws://") + "/_stcore/stream"
    async with websockets.connect(stream, subprotocols=["streamlit"], max_size=None) as ws:
        session = ProtocolSession(ws, url, f"pid={who.pid}")
        tree = await session.rerun()
        agree = WidgetState(id=tree.checkbox(key="agree").id, bool_value=True)
        tree = await session.rerun([agree])
        tree = await session.rerun([agree, click(tree.button(key="start"))])
        tree = await session.rerun([click(tree.button(key="begin"))])
        await session.fetch_images()
        while tree.get("progress"):
            await asyncio.sleep(rng.uniform(*think))
            pair = [b for b in tree.button if b.key and b.key.startswith("pair_")]
            clicked = time.perf_counter()
            tree = await session.rerun([click(pair[0])] if pair else rating_answer(tree, 3, 5))
            await session.fetch_images()
            who.latencies.append(time.perf_counter() - clicked)
            who.acknowledged += 1
        who.completed = any(completion_code in s.value for s in tree.success)
