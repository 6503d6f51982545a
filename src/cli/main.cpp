#include <cstdio>
int main() { std::puts("recforge"); return 0; }
