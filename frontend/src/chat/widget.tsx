// The embeddable widget (helper fills in).
export {};
