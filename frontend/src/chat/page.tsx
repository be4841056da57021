// The full-page web chat (helper fills in).
export {};
