// Live document status: the knowledge WebSocket, reconnected with backoff; while it is down
// the page polls instead (see shouldPoll in documents.ts).
import { useEffect, useRef, useState } from "react";
import { socketUrl } from "../../shared/api";
import { paths } from "./client";
import { parseSocketMessage, reconnectDelay, type FeedState } from "./documents";
import type { StatusUpdate } from "./types";

/** The consumer closes sockets of users who may not view the base with this code. */
const CLOSE_NOT_FOUND = 4404;

export function useDocumentFeed(
  baseId: number | null,
  onUpdate: (update: StatusUpdate) => void,
  onOpen: () => void,
): FeedState {
  const [state, setState] = useState<FeedState>("connecting");
  const handlers = useRef({ onUpdate, onOpen });
  handlers.current = { onUpdate, onOpen };

  useEffect(() => {
    if (baseId === null) return;
    let socket: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let attempt = 0;
    let stopped = false;

    const connect = () => {
      socket = new WebSocket(socketUrl(paths.socket(baseId)));
      socket.onopen = () => {
        attempt = 0;
        setState("live");
        // Whatever changed while the socket was not listening.
        handlers.current.onOpen();
      };
      socket.onmessage = (event: MessageEvent) => {
        let data: unknown;
        try {
          data = JSON.parse(String(event.data));
        } catch {
          return;
        }
        const update = parseSocketMessage(data);
        if (update) handlers.current.onUpdate(update);
      };
      socket.onclose = (event: CloseEvent) => {
        socket = null;
        if (stopped) return;
        setState("polling");
        if (event.code === CLOSE_NOT_FOUND) return;
        timer = setTimeout(connect, reconnectDelay(attempt));
        attempt += 1;
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close();
    };
  }, [baseId]);

  return state;
}
