import { createContext, useContext } from "react";
import type { ChatState } from "../chat/connection";

export interface ChatContextValue {
  state: ChatState;
  send: (content: string) => string | null;
}

export const ChatContext = createContext<ChatContextValue | null>(null);

export function useChat(): ChatContextValue {
  const value = useContext(ChatContext);
  if (!value) throw new Error("useChat outside ChatContext");
  return value;
}
